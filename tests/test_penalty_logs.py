"""The step logs of GReg's penalty (gregnb.losses.penalty_logs, through greg_objective and fit): the share of masked
rows and the penalty's ID / outlier parts, checked against a hand computation on a tiny batch of a linear model,
where grad_x E = -W^T softmax(Wx + b) is known in closed form."""
import pytest
import torch

from gregnb.data.toy2d import load_toy
from gregnb.losses import greg_objective, penalty_logs
from gregnb.models import MLP
from gregnb.train import fit

M_IN, M_OUT = -1.5, -1.2


def _linear():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -0.5], [0.3, 0.8], [-1.2, 0.4]]))
        model.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
    return model


def _batch():
    x_id = torch.tensor([[1.5, 0.2], [0.1, 0.1], [-1.0, 2.0], [0.4, -0.3]])
    x_ood = torch.tensor([[0.0, 0.0], [3.0, -2.0], [0.2, 0.3], [-2.5, -1.0], [0.5, 0.5], [1.0, 1.0]])
    return x_id, torch.tensor([0, 1, 2, 0]), x_ood


def _by_hand(model, x_id, x_ood, convention, penalize):
    """Masks, then the per-row norms of E's input gradient -W^T p, written out row by row."""
    w, b = model.weight.detach().double(), model.bias.detach().double()
    rows = []
    for part, xs in (("id", x_id), ("ood", x_ood)):
        for x in xs.double():
            z = w @ x + b
            e = -torch.logsumexp(z, 0).item()
            g = (-(w.T @ torch.softmax(z, 0))).norm().item()
            rows.append((part, e, g))
    n_id, n_ood = len(x_id), len(x_ood)
    n = n_id + n_ood
    out = {}
    for part, size in (("id", n_id), ("ood", n_ood)):
        es = [(e, g) for p, e, g in rows if p == part]
        if penalize == "all":
            masked = [True] * len(es)
        elif part == "id":
            masked = [e <= M_IN if convention == "paper" else e < M_IN for e, _ in es]
        else:
            masked = [e >= M_OUT if convention == "paper" else e > M_OUT for e, _ in es]
        out[f"masked_{part}"] = sum(masked) / size
        norms = [g for (e, g), m in zip(es, masked) if m]
        if convention == "paper":
            out[f"loss_grad_{part}"] = sum(norms) / size          # mean over the part of mask * ||grad E||
        else:
            out[f"loss_grad_{part}"] = sum(norms) / size / n      # d(mean hinge)/dx = mask * grad E / size; / N
    return out


@pytest.mark.parametrize("convention", ["paper", "reference"])
@pytest.mark.parametrize("penalize", ["correct", "all"])
def test_masked_shares_and_penalty_parts_match_a_hand_computation(convention, penalize):
    model = _linear()
    x_id, y, x_ood = _batch()
    expected = _by_hand(model, x_id, x_ood, convention, penalize)
    if penalize == "correct":   # the margins split both parts: some rows masked, some not
        assert 0 < expected["masked_id"] < 1 and 0 < expected["masked_ood"] < 1
    _, parts = greg_objective(model, x_id, y, x_ood, m_in=M_IN, m_out=M_OUT, lambda_grad=0.5, convention=convention,
                              penalize=penalize)
    for key, value in expected.items():
        assert parts[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert parts["loss_grad_id"] + parts["loss_grad_ood"] == pytest.approx(parts["loss_grad"], rel=1e-6)


def test_without_the_term_the_masks_are_logged_and_the_parts_are_zero():
    model = _linear()
    x_id, y, x_ood = _batch()
    expected = _by_hand(model, x_id, x_ood, "paper", "correct")
    _, parts = greg_objective(model, x_id, y, x_ood, m_in=M_IN, m_out=M_OUT, lambda_grad=0.0)
    assert parts["masked_id"] == pytest.approx(expected["masked_id"])
    assert parts["masked_ood"] == pytest.approx(expected["masked_ood"])
    assert parts["loss_grad"] == parts["loss_grad_id"] == parts["loss_grad_ood"] == 0.0
    assert parts["masked_ood"] == parts["past_m_out"]   # the paper's mask is the complement of the hinge


def test_penalty_logs_refuses_bad_input():
    e = torch.tensor([-2.0, -1.0, 0.0])
    with pytest.raises(ValueError, match="convention"):
        penalty_logs(e, 1, M_IN, M_OUT, convention="code")
    with pytest.raises(ValueError, match="n_id"):
        penalty_logs(e, 3, M_IN, M_OUT)
    with pytest.raises(ValueError, match="norms"):
        penalty_logs(e, 1, M_IN, M_OUT, torch.ones(2))


@pytest.mark.parametrize("method", ["greg", "greg+", "oe+grad", "energy"])
def test_fit_history_holds_the_epoch_means_of_the_step_logs(method):
    data = load_toy("blobs", seed=0, n_train=96, n_aux=400)
    steps = []
    torch.manual_seed(0)
    h = fit(MLP(hidden=(16, 16)), data, method, epochs=2, batch_size=32, aux_batch_size=32, m_in=-3.0, m_out=-1.0, lambda_grad=0.5,
            candidate_factor=3, progress=False, device="cpu", step_hook=lambda i, logs: steps.append(dict(logs)))
    per_epoch = len(steps) // 2
    for key in ("masked_id", "masked_ood", "loss_grad_id", "loss_grad_ood"):
        for epoch in range(2):
            chunk = [s[key] for s in steps[epoch * per_epoch:(epoch + 1) * per_epoch]]
            assert h[key][epoch] == pytest.approx(sum(chunk) / len(chunk), rel=1e-9), (method, key)
    if method == "energy":
        assert h["loss_grad_ood"] == [0.0, 0.0]


def test_history_means_tabulates_training_means_per_run():
    from gregnb.experiments import history_means, paired_verdict

    hist = {("a", 0): {"masked_ood": [0.2, 0.4]}, ("b", 0): {"masked_ood": [0.5, 0.7]},
            ("a", 1): {"masked_ood": [0.1, 0.1]}, ("b", 1): {"masked_ood": [0.3, 0.5]}}
    df = history_means(hist, ["masked_ood"])
    assert df.set_index(["method", "seed"]).masked_ood.to_dict() == pytest.approx(
        {("a", 0): 0.3, ("b", 0): 0.6, ("a", 1): 0.1, ("b", 1): 0.4})
    assert paired_verdict(df, "a", "b", value="masked_ood")["verdict"] == "holds"
    assert list(history_means(hist, ["masked_ood"], rows=["a"]).method.unique()) == ["a"]
    with pytest.raises(ValueError, match="no \\['loss_grad'\\]"):
        history_means(hist, ["loss_grad"])
    with pytest.raises(ValueError, match="no histories"):
        history_means(hist, ["masked_ood"], rows=["c"])
