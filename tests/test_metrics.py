import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from gregnb.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr, ood_metrics, threshold_at_tpr


def sk_fpr_at_tpr(id_s, ood_s, tpr=0.95):
    y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    fpr, tpr_curve, _ = roc_curve(y, np.r_[id_s, ood_s], drop_intermediate=False)
    return fpr[np.argmax(tpr_curve >= tpr)]


def cases():
    rng = np.random.default_rng(0)
    yield "random", rng.normal(1, 1, 500), rng.normal(0, 1, 300)
    yield "unequal-sizes", rng.normal(0.5, 1, 37), rng.normal(0, 2, 1001)
    yield "tied", rng.integers(0, 5, 400).astype(float), rng.integers(0, 4, 250).astype(float)
    yield "all-tied", np.zeros(20), np.zeros(30)
    yield "separated", rng.uniform(2, 3, 100), rng.uniform(0, 1, 100)
    yield "reversed", rng.uniform(0, 1, 100), rng.uniform(2, 3, 100)
    yield "small", np.array([3.0, 1.0, 2.0]), np.array([2.0, 0.0])


@pytest.mark.parametrize("name,id_s,ood_s", list(cases()))
def test_against_sklearn(name, id_s, ood_s):
    y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    s = np.r_[id_s, ood_s]
    for tpr in (0.95, 0.9, 0.5, 1.0):
        assert fpr_at_tpr(id_s, ood_s, tpr) == pytest.approx(sk_fpr_at_tpr(id_s, ood_s, tpr), abs=1e-12), tpr
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr_in(id_s, ood_s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert aupr_out(id_s, ood_s) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)


def test_ood_positive_convention_against_sklearn():
    rng = np.random.default_rng(3)
    id_s, ood_s = rng.normal(1, 1, 400), rng.normal(0, 1.5, 300)
    # OOD as positive: labels OOD=1, scores negated (high = OOD)
    y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
    fpr, tpr, _ = roc_curve(y, -np.r_[id_s, ood_s], drop_intermediate=False)
    expected = fpr[np.argmax(tpr >= 0.95)]
    assert fpr_at_tpr(id_s, ood_s, positive="ood") == pytest.approx(expected, abs=1e-12)
    # and the two readings really differ on these scores
    assert abs(fpr_at_tpr(id_s, ood_s) - expected) > 0.05


def test_hand_worked_fpr95():
    # 20 ID scores 1..20: 95% kept means 19 of 20, so t = 2; OOD scores >= 2 are 2 and 5 of (0, 2, 5, 1)
    id_s = np.arange(1, 21, dtype=float)
    ood_s = np.array([0.0, 2.0, 5.0, 1.0])
    assert threshold_at_tpr(id_s) == 2.0
    assert fpr_at_tpr(id_s, ood_s) == 0.5


def test_perfect_separation_values():
    id_s, ood_s = np.array([5.0, 6.0, 7.0]), np.array([0.0, 1.0])
    m = ood_metrics(id_s, ood_s)
    assert m == {"fpr95": 0.0, "auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0}


def test_accepts_lists_and_tensors():
    id_s = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float32)
    ood_s = [0.1, 0.75]
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score([1, 1, 1, 0, 0], [0.9, 0.8, 0.7, 0.1, 0.75]))
    # 95% of 3 ID scores means all 3, so t = 0.7 and the OOD score 0.75 is accepted
    assert fpr_at_tpr(id_s.numpy(), torch.tensor(ood_s)) == pytest.approx(0.5)


@pytest.mark.parametrize("bad,match", [
    ([], "empty"),
    ([1.0, float("nan")], "NaN"),
    ([1.0, float("inf")], "NaN/inf"),
    (np.zeros((2, 2)), "1-D"),
    (["a", "b"], "1-D sequence of numbers"),
])
def test_bad_input_messages(bad, match):
    with pytest.raises(ValueError, match=match):
        ood_metrics(bad, [0.0, 1.0])
    with pytest.raises(ValueError, match=match):
        fpr_at_tpr([0.0, 1.0], bad)


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5])
def test_bad_tpr(tpr):
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr([1.0, 2.0], [0.0], tpr)


def test_bad_positive():
    with pytest.raises(ValueError, match="positive"):
        fpr_at_tpr([1.0], [0.0], positive="OOD!")
