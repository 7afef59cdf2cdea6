"""The validation OOD set is disjoint from the pool and the test sets; the selection protocol and the
region split compute what they say."""
import numpy as np
import pandas as pd
import pytest
import torch

from gregnb.calibration import evaluate_models_on, fpr95_by_region, plot_sweep, select_setting
from gregnb.data import digits as digits_module
from gregnb.data.validation import VAL_SOURCES, digits_validation_ood


def test_validation_sources_are_disjoint_from_pool_and_test_sets():
    val = {s for v in VAL_SOURCES.values() for s in v}
    used = set(digits_module.AUX_SOURCES) | {s for v in digits_module.OOD_SOURCES.values() for s in v}
    assert not val & used
    # and not merely renamed: the file names differ too
    assert not {s.split("/")[-1] for s in val} & {s.split("/")[-1] for s in used}


def test_no_validation_image_appears_in_the_pool_or_a_test_set(digits):
    val = digits_validation_ood(0).flatten(1)
    val = val[val.std(1) > 0.05]  # blank images carry no source
    for name, x in [("pool", digits.aux_x), *digits.ood.items()]:
        d = torch.cdist(val, x.flatten(1)).min(1).values
        assert d.min() > 1e-3, f"a validation image equals an image of {name}"


def test_validation_set_shape_range_and_determinism():
    a, b = digits_validation_ood(0, n=300), digits_validation_ood(0, n=300)
    assert a.shape == (300, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, digits_validation_ood(1, n=300))
    assert 0.0 <= a.min() and a.max() <= 1.0
    with pytest.raises(ValueError, match="n must be"):
        digits_validation_ood(0, n=2)


def _frame(values):
    rows = [{"seed": s, "method": m, "ood": "mean", "fpr95": v} for m, vs in values.items() for s, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_select_setting_takes_the_lowest_mean_and_breaks_ties_by_order():
    df = _frame({"a": [0.3, 0.5], "b": [0.2, 0.4], "c": [0.2, 0.4]})
    assert select_setting(df, ["a", "b", "c"]) == "b"
    assert select_setting(df, ["c", "b"]) == "c"
    assert select_setting(df, ["a", "b"], lower_is_better=False) == "a"
    with pytest.raises(ValueError, match="no validation results"):
        select_setting(df, ["a", "zzz"])


def test_plot_sweep_draws_the_means_in_percent():
    from matplotlib.figure import Figure

    df = _frame({"l1": [0.1, 0.3], "l2": [0.4, 0.4], "base": [0.5, 0.7]})
    ax = Figure().subplots()
    plot_sweep(ax, df, {"l2": 1.0, "l1": 0.1}, baseline="base")
    x, y = ax.lines[0].get_data()
    assert list(x) == [0.1, 1.0] and np.allclose(y, [20.0, 40.0])
    assert ax.get_xscale() == "log"


def test_fpr95_by_region_matches_a_hand_computation(blobs):
    from gregnb.experiments import default_model
    from gregnb.scores import energy

    model = default_model(blobs, seed=0).eval()
    out = fpr95_by_region(model, blobs, lambda x: x[:, 0] < 0)
    with torch.no_grad():
        id_s = -energy(model(blobs.test_x)).numpy()
        x = torch.cat(list(blobs.ood.values()))
        ood_s = -energy(model(x)).numpy()
    t = np.sort(id_s)[int(np.floor(0.05 * len(id_s)))]  # accept the top 95% of ID
    left = (x[:, 0] < 0).numpy()
    assert out["n_covered"] == left.sum() and out["n_uncovered"] == (~left).sum()
    assert out["covered"] == pytest.approx((ood_s[left] >= t).mean(), abs=2.5 / left.sum() + 0.01)
    assert out["uncovered"] == pytest.approx((ood_s[~left] >= t).mean(), abs=2.5 / (~left).sum() + 0.01)


def test_evaluate_models_on_swaps_the_ood_sets(blobs):
    from gregnb.experiments import default_model

    model = default_model(blobs, seed=0)
    df = evaluate_models_on({("m", 0): model}, blobs, {"only": blobs.ood["far"]})
    assert set(df.ood) == {"only", "mean"}
    assert df[df.ood == "only"].fpr95.item() == df[df.ood == "mean"].fpr95.item()
    with pytest.raises(ValueError, match="at least one"):
        evaluate_models_on({("m", 0): model}, blobs, {})


def test_one_validation_source_alone():
    mixed = digits_validation_ood(0).flatten(1)
    for name in VAL_SOURCES:
        one = digits_validation_ood(0, n=60, source=name)
        assert one.shape == (60, 1, 8, 8) and torch.equal(one, digits_validation_ood(0, n=60, source=name))
    grat = digits_validation_ood(0, n=60, source="gratings").flatten(1)
    # gratings are exact sinusoids / checkerboards: a checkerboard row holds only 0 and 1
    assert ((grat == 0) | (grat == 1)).all(1).any()
    assert not torch.equal(digits_validation_ood(0, n=60, source="scan"), digits_validation_ood(0, n=60, source="terrain"))
    assert mixed.shape[0] == 900
    with pytest.raises(ValueError, match="source must be one of"):
        digits_validation_ood(0, source="photos")
