"""Distance to the pool against a brute-force NumPy computation; FPR95 per distance band against
gregnb.metrics and a hand-worked case; the band plot draws what the table holds."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from gregnb.coverage import (assign_bands, band_edges, coverage_bands, covered_vs_uncovered, distance_by_set,
                             distance_to_pool, embed, evaluate_uncovered, fpr95_by_band, nearest_distance)
from gregnb.data.base import Benchmark
from gregnb.metrics import fpr_at_tpr


def _brute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(np.sqrt(((row - other) ** 2).sum()) for other in b) for row in a])


def test_nearest_distance_matches_brute_force_and_finds_duplicates():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(37, 5)), rng.normal(size=(53, 5))
    a[3] = b[10]  # an exact duplicate: distance 0
    d = nearest_distance(torch.tensor(a), torch.tensor(b), batch_size=8).numpy()
    assert np.allclose(d, _brute(a, b), atol=1e-9) and d[3] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same D"):
        nearest_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="finite"):
        nearest_distance(torch.tensor([[float("nan"), 0.0]]), torch.zeros(2, 2))


class _Feat(nn.Module):
    """A fixed linear "network" whose penultimate features are x @ W (no training needed)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(64, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x, return_features=False):
        h = self.body(x.flatten(1))
        return (self.fc(h), h) if return_features else self.fc(h)


def test_distance_to_pool_in_input_and_feature_space_matches_numpy():
    torch.manual_seed(0)
    x, pool = torch.rand(20, 1, 8, 8), torch.rand(70, 1, 8, 8)
    d_in = distance_to_pool(x, pool).numpy()
    assert np.allclose(d_in, _brute(x.flatten(1).double().numpy(), pool.flatten(1).double().numpy()), atol=1e-6)
    model = _Feat()
    with torch.no_grad():
        fx, fp = model.body(x.flatten(1)).double().numpy(), model.body(pool.flatten(1)).double().numpy()
    fx, fp = fx / np.linalg.norm(fx, axis=1, keepdims=True), fp / np.linalg.norm(fp, axis=1, keepdims=True)
    d_f = distance_to_pool(x, pool, model).numpy()
    assert np.allclose(d_f, _brute(fx, fp), atol=1e-5) and d_f.max() <= 2.0 + 1e-6
    assert torch.allclose(embed(x, model).norm(dim=1), torch.ones(20))


def test_bands_have_equal_counts():
    d = np.arange(100.0)
    edges = band_edges(d, 4)
    assert np.bincount(assign_bands(d, edges)).tolist() == [25, 25, 25, 25]
    with pytest.raises(ValueError, match="n_bands"):
        band_edges(d, 0)


def test_fpr95_by_band_hand_worked_and_against_metrics():
    # ID scores 1..20: the threshold keeping 95% of ID is 2 (19 of 20 scores are >= 2)
    id_s = np.arange(1.0, 21.0)
    ood = np.array([5.0, 0.0, 3.0, 1.0, 2.5, 0.5, 0.1, 9.0])
    dist = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])  # two per band
    rows = fpr95_by_band(id_s, ood, dist, n_bands=4)
    assert [r["fpr95"] for r in rows] == [0.5, 0.5, 0.5, 0.5] and [r["n"] for r in rows] == [2, 2, 2, 2]
    rows = fpr95_by_band(id_s, ood, dist, edges=[0.0, 0.35, 0.75, 1.0])  # 3, 4 and 1 points
    assert [r["fpr95"] for r in rows] == [pytest.approx(2 / 3), 0.25, 1.0]
    rng = np.random.default_rng(1)
    id_s, ood, dist = rng.normal(1, 1, 300), rng.normal(0, 1, 500), rng.random(500)
    edges = band_edges(dist, 5)
    band = assign_bands(dist, edges)
    for r in fpr95_by_band(id_s, ood, dist, n_bands=5):
        assert r["fpr95"] == pytest.approx(fpr_at_tpr(id_s, ood[band == r["band"] - 1]))
    empty = fpr95_by_band(id_s, ood, dist, edges=[0.0, 0.5, 0.9, 2.0, 3.0])
    assert np.isnan(empty[-1]["fpr95"]) and empty[-1]["n"] == 0
    with pytest.raises(ValueError, match="one distance per OOD score"):
        fpr95_by_band(id_s, ood, dist[:-1])


def test_band_edges_out_of_order_are_refused_not_reported_as_bands():
    """Issue 37, item 5: unsorted edges gave bands with lo > hi and an FPR95 for each; now an error says how to fix
    them, and tied edges (equal quantiles) still work."""
    id_s, ood, dist = np.arange(1.0, 21.0), np.array([5.0, 0.0, 3.0, 1.0]), np.array([0.1, 0.3, 0.6, 0.9])
    for bad in ([1.0, 0.5, 0.2, 0.0], [0.0, 0.5, 0.4, 1.0]):
        with pytest.raises(ValueError, match=r"edges must increase .*sorted\(edges\) = \[0\.0, "):
            fpr95_by_band(id_s, ood, dist, edges=bad)
        with pytest.raises(ValueError, match="edges must increase"):
            assign_bands(dist, bad)
    for bad in ([0.5], [0.0, float("nan"), 1.0]):
        with pytest.raises(ValueError, match="at least two band edges and no NaN"):
            fpr95_by_band(id_s, ood, dist, edges=bad)
    rows = fpr95_by_band(id_s, ood, dist, edges=[0.0, 0.5, 0.5, 1.0])  # a tie: an empty middle band
    assert [(r["lo"], r["hi"], r["n"]) for r in rows] == [(0.0, 0.5, 2), (0.5, 0.5, 0), (0.5, 1.0, 2)]
    assert rows[0]["fpr95"] == 0.5 and np.isnan(rows[1]["fpr95"]) and rows[2]["fpr95"] == 0.5  # 5 >= 2; 3 >= 2
    # a tensor for the distances, a 0-d tensor for n_bands: the same bands as NumPy and an int
    assert fpr95_by_band(id_s, ood, torch.tensor(dist), n_bands=torch.tensor(2)) == fpr95_by_band(id_s, ood, dist,
                                                                                                   n_bands=2)


def _bench():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 8, 8, generator=g)
    return Benchmark("t", x, torch.zeros(60, dtype=torch.long), x[:40], torch.zeros(40, dtype=torch.long),
                     torch.rand(90, 1, 8, 8, generator=g), {"near": torch.rand(30, 1, 8, 8, generator=g)}, 3,
                     ood_uncovered={"far": 2 * torch.rand(50, 1, 8, 8, generator=g)})


def test_coverage_bands_uses_one_banding_per_seed_and_the_metrics_threshold():
    data = _bench()
    torch.manual_seed(0)
    models = {("a", 0): _Feat(), ("b", 0): _Feat(), ("a", 1): _Feat()}
    refs = {0: _Feat(), 1: _Feat()}
    df = coverage_bands(models, data, refs, n_bands=4)
    assert len(df) == 12 and set(df.band) == {1, 2, 3, 4}
    assert (df.groupby(["seed", "method"]).n.sum() == 80).all()
    # same bands for every method of a seed
    assert np.allclose(df[(df.seed == 0) & (df.method == "a")].lo, df[(df.seed == 0) & (df.method == "b")].lo)
    # band 4 of model ("b", 0), recomputed by hand
    x = torch.cat([data.ood["near"], data.ood_uncovered["far"]])
    d = distance_to_pool(x, data.aux_x, refs[0]).numpy()
    band = assign_bands(d, band_edges(d, 4))
    with torch.no_grad():
        score = lambda m, z: torch.logsumexp(m(z), 1).numpy()  # -energy: high = ID
        expect = fpr_at_tpr(score(models[("b", 0)], data.test_x), score(models[("b", 0)], x)[band == 3])
        far_share = (np.arange(80) >= 30)[band == 3].mean()
    row = df[(df.seed == 0) & (df.method == "b") & (df.band == 4)].iloc[0]
    assert row.fpr95 == pytest.approx(expect) and row.uncovered == pytest.approx(far_share)
    # input space needs no reference; feature space does
    assert len(coverage_bands({("a", 0): models[("a", 0)]}, data, space="input", n_bands=2)) == 2
    with pytest.raises(ValueError, match="reference model"):
        coverage_bands(models, data, None)
    with pytest.raises(ValueError, match="no reference model for seed 1"):
        coverage_bands(models, data, {0: refs[0]})
    # both spaces in one call (each model scored once): the same rows as one call per space
    features, pixels = coverage_bands(models, data, refs, space=("features", "input"), n_bands=4)
    pd.testing.assert_frame_equal(features, df)
    pd.testing.assert_frame_equal(pixels, coverage_bands(models, data, space="input", n_bands=4))
    with pytest.raises(ValueError, match="distinct"):
        coverage_bands(models, data, refs, space=("input", "input"))
    with pytest.raises(ValueError, match="space must be"):
        coverage_bands(models, data, refs, space=())
    with pytest.raises(ValueError, match="space must be"):
        distance_by_set(data, space="pixels")
    table = distance_by_set(data, space="input")
    assert list(table.group) == ["covered", "uncovered"] and table.loc["far", "median"] > table.loc["near", "median"]


def test_plot_bands_draws_the_means_in_percent():
    from matplotlib.figure import Figure

    from gregnb.viz import plot_bands

    df = pd.DataFrame([{"seed": s, "method": m, "band": b, "fpr95": v}
                       for m, vals in {"x": [[0.1, 0.3], [0.2, 0.2]], "y": [[0.5, 0.5], [0.0, 0.2]]}.items()
                       for b, per_seed in zip((1, 2), vals) for s, v in enumerate(per_seed)])
    ax = Figure().subplots()
    plot_bands(df, ax)
    xs, ys = ax.lines[0].get_data()
    assert list(xs) == [1, 2] and np.allclose(ys, [20.0, 20.0])
    assert np.allclose(ax.lines[1].get_data()[1], [50.0, 10.0]) and "2 seeds" in ax.lines[0].get_label()


def test_covered_vs_uncovered_stacks_the_mean_rows_and_score_per_method():
    from gregnb.experiments import paired_verdict

    cov = pd.DataFrame([{"seed": s, "method": m, "ood": o, "fpr95": v} for s in (0, 1) for m, v in (("a", 0.2), ("b", 0.3))
                        for o in ("x", "mean")])
    unc = cov.assign(fpr95=cov.fpr95[::-1].values)
    both = covered_vs_uncovered(cov, unc)
    assert sorted(both.ood.unique()) == ["covered", "uncovered"] and len(both) == 8
    assert paired_verdict(both, "a", "b", ood="covered")["verdict"] == "holds"
    assert paired_verdict(both, "a", "b", ood="uncovered")["verdict"] == "does not hold"
    with pytest.raises(ValueError, match="no 'mean' rows"):
        covered_vs_uncovered(cov[cov.ood == "x"], unc)
    data = _bench()
    torch.manual_seed(0)
    model = _Feat()
    e = coverage_bands({("m", 0): model}, data, space="input", n_bands=1)
    p = coverage_bands({("m", 0): model}, data, space="input", n_bands=1, score={"m": "msp"})
    x = torch.cat([data.ood["near"], data.ood_uncovered["far"]])
    with torch.no_grad():
        msp = lambda z: torch.softmax(model(z), 1).max(1).values.numpy()
        assert p.fpr95[0] == pytest.approx(fpr_at_tpr(msp(data.test_x), msp(x)))
    assert len(e) == 1


def test_evaluate_uncovered_scores_each_label_as_asked():
    from gregnb.calibration import evaluate_models_on

    data = _bench()
    torch.manual_seed(0)
    models = {("e", 0): _Feat(), ("p", 0): _Feat()}
    df = evaluate_uncovered(models, data, {"p": "msp"})
    assert list(df[df.ood == "far"].method) == ["e", "p"]
    want = evaluate_models_on({("p", 0): models[("p", 0)]}, data, data.ood_uncovered, score="msp")
    assert df[df.method == "p"].fpr95.tolist() == want.fpr95.tolist()
    with pytest.raises(ValueError, match="no uncovered OOD sets"):
        import dataclasses

        evaluate_uncovered(models, dataclasses.replace(data, ood_uncovered={}))
