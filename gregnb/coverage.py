"""How far each test outlier lies from the training pool, and FPR95 band by band of that distance.

A test OOD image is "covered" when the auxiliary pool holds images like it. This module measures that: the
distance from each test image to its **nearest pool image**, either

* in input space (``space="input"``): the L2 distance between flattened images, in pixel-intensity units
  (the digits lie in [0, 1], so 8 is the largest possible distance for 8x8 images); or
* in feature space (``space="features"``): the L2 distance between the **unit-normalised penultimate
  features** of a reference model (the cross-entropy model of the same seed, before any outlier training),
  in [0, 2]; the space GReg+'s sampler clusters in (Algorithm 1, docs/method.md).

:func:`fpr95_by_band` then cuts the test outliers into quantile bands of that distance (band 1 = the nearest
quarter, ...) and reports FPR95 (ID positive, threshold from the ID test set, as everywhere) in each band;
:func:`coverage_bands` does that for every trained model and seed, and :func:`gregnb.viz.plot_bands` draws it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import validate
from .calibration import evaluate_models_on
from .data.base import Benchmark
from .inference import predict_logits
from .metrics import fpr_at_tpr, threshold_at_tpr
from .scores import score_fn

__all__ = ["SPACES", "embed", "nearest_distance", "distance_to_pool", "band_edges", "assign_bands", "fpr95_by_band",
           "check_edges", "grouped_ood_sets", "distance_by_set", "coverage_bands", "evaluate_uncovered",
           "covered_vs_uncovered"]

SPACES = ("features", "input")


def embed(x: torch.Tensor, model: nn.Module | None = None, *, transform=None, batch_size: int = 2048) -> torch.Tensor:
    """Rows to measure distances between: ``x`` flattened (``model=None``, input space), or ``model``'s
    penultimate features scaled to unit L2 norm (``(N, D)``, float32, on the CPU)."""
    x = torch.as_tensor(x)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if model is None:
        return x.detach().float().flatten(1).cpu()
    _, f = predict_logits(model, x, batch_size, features=True, transform=transform)
    return f.float() / f.float().norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def nearest_distance(queries: torch.Tensor, reference: torch.Tensor, *, batch_size: int = 512,
                     shortlist: int = 8) -> torch.Tensor:
    """For each row of ``queries`` ``(N, D)``, the L2 distance to its nearest row of ``reference`` ``(M, D)``.

    A float32 pass (``|a|^2 + |b|^2 - 2 a.b``, blocks of ``batch_size`` queries, memory ``batch_size x M``) finds
    each query's ``shortlist`` nearest candidates; their distances are then taken exactly, in float64 from the
    differences. The result is the float64 nearest distance unless the true nearest row lies outside a shortlist
    whose float32 distances it ties to float32 rounding (then the distance of a row that close). Returns ``(N,)``
    float64, >= 0."""
    q, r = torch.as_tensor(queries), torch.as_tensor(reference)
    if "meta" in (q.device.type, r.device.type):
        raise ValueError("queries and reference must hold values: one is on the meta device (shapes only)")
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1] or len(r) == 0:
        raise ValueError(f"queries (N, D) and a non-empty reference (M, D) with the same D are needed, got "
                         f"{tuple(q.shape)} and {tuple(r.shape)}")
    if not (torch.isfinite(q).all() and torch.isfinite(r).all()):
        raise ValueError("queries and reference must be finite (no NaN or inf)")
    batch_size, shortlist = validate.whole("batch_size", batch_size), validate.whole("shortlist", shortlist)
    k = min(shortlist, len(r))
    r32, r64 = r.float(), r.double()
    r2 = (r32 * r32).sum(1)
    out = []
    for i in range(0, len(q), batch_size):
        a = q[i:i + batch_size]
        a32 = a.float()
        d2 = r2[None, :] - 2.0 * a32 @ r32.T  # |a|^2 is the same along a row: it cannot change the shortlist
        near = d2.topk(k, dim=1, largest=False).indices  # (b, k)
        diff = r64[near] - a.double()[:, None, :]  # (b, k, D)
        out.append((diff * diff).sum(2).min(1).values.sqrt())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def distance_to_pool(x: torch.Tensor, pool: torch.Tensor, model: nn.Module | None = None, *, transform=None,
                     batch_size: int = 512) -> torch.Tensor:
    """Distance ``(N,)`` from each image of ``x`` to its nearest image of ``pool``: in input space
    (``model=None``) or in ``model``'s normalised penultimate feature space (see the module docstring)."""
    if len(pool) == 0:
        raise ValueError("pool is empty: pass the outlier pool's images (N, ...) to measure distances to")
    return nearest_distance(embed(x, model, transform=transform), embed(pool, model, transform=transform),
                            batch_size=batch_size)


def band_edges(distances, n_bands: int = 4) -> np.ndarray:
    """``n_bands + 1`` edges at the 0, 1/n, ..., 1 quantiles of ``distances`` (equal-count bands)."""
    n_bands = validate.whole("n_bands", n_bands)
    d = _values("distances", distances)
    if d.size < n_bands or not np.isfinite(d).all():
        raise ValueError(f"need at least n_bands ({n_bands}) finite distances, got {d.size}")
    return np.quantile(d, np.linspace(0.0, 1.0, int(n_bands) + 1))


def assign_bands(distances, edges) -> np.ndarray:
    """Band index 0 .. len(edges) - 2 of each distance: band b holds ``edges[b] <= d < edges[b + 1]`` (the
    last band includes its upper edge; values beyond the edges go to the first or last band)."""
    d, e = _values("distances", distances), check_edges(edges)
    return np.clip(np.searchsorted(e[1:-1], d, side="right"), 0, len(e) - 2)


def fpr95_by_band(id_scores, ood_scores, distances, *, n_bands: int = 4, edges=None, tpr: float = 0.95) -> list[dict]:
    """FPR at ``tpr`` of the outliers in each distance band. Scores are HIGH = ID (pass ``-energy``); the
    threshold comes from all ``id_scores``, as for the whole-set FPR95.

    ``edges``: band edges (default :func:`band_edges` of ``distances``). Returns one dict per band:
    ``band`` (1 = nearest), ``lo``, ``hi`` (its distance range), ``n`` and ``fpr95`` (NaN for an empty band).
    """
    ood, d = _values("ood_scores", ood_scores), _values("distances", distances)
    if ood.shape != d.shape:
        raise ValueError(f"one distance per OOD score is needed: {ood.size} scores, {d.size} distances")
    edges = band_edges(d, n_bands) if edges is None else check_edges(edges)
    band = assign_bands(d, edges)
    threshold_at_tpr(id_scores, tpr)  # validates id_scores and tpr even when a band is empty
    return [{"band": b + 1, "lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int((band == b).sum()),
             "fpr95": fpr_at_tpr(id_scores, ood[band == b], tpr) if (band == b).any() else float("nan")}
            for b in range(len(edges) - 1)]


def check_edges(edges) -> np.ndarray:
    """``edges`` as a float64 array, checked: at least two band edges, none NaN, in increasing order (equal
    neighbours allowed: tied quantiles); an error says how to fix them."""
    e = _values("edges", edges)
    if e.size < 2 or np.isnan(e).any():
        raise ValueError(f"edges must hold at least two band edges and no NaN, got {e.tolist()}")
    if (np.diff(e) < 0).any():
        raise ValueError(f"edges must increase (band b holds edges[b] <= d < edges[b + 1]), got {e.tolist()}; pass "
                         f"them sorted: sorted(edges) = {sorted(e.tolist())}")
    return e


def _values(name: str, values) -> np.ndarray:
    """``values`` (a list, an array or a tensor on any device) as a flat float64 NumPy array; else a clear error."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D collection of numbers, got {validate.describe(values)}") from None


def grouped_ood_sets(data: Benchmark) -> dict[str, tuple[str, torch.Tensor]]:
    """Every test OOD set of ``data``: name -> (``"covered"`` for ``data.ood``, ``"uncovered"`` for
    ``data.ood_uncovered``, inputs)."""
    out = {k: ("covered", v) for k, v in data.ood.items()}
    out.update({k: ("uncovered", v) for k, v in data.ood_uncovered.items()})
    return out


def _check_space(space: str, reference) -> None:
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if space == "features" and reference is None:
        raise ValueError("space='features' needs a reference model (the seed's cross-entropy model)")


def distance_by_set(data: Benchmark, reference: nn.Module | None = None, *, space: str = "features"):
    """Distance to the pool of every test OOD image, summarised per set: a DataFrame indexed by set with
    ``group`` (covered / uncovered), ``n``, and the 25th, 50th and 75th percentiles of the distance."""
    import pandas as pd

    _check_space(space, reference)
    model = reference if space == "features" else None
    pool = embed(data.aux_x, model, transform=data.eval_transform)
    rows = {}
    for name, (group, x) in grouped_ood_sets(data).items():
        d = nearest_distance(embed(x, model, transform=data.eval_transform), pool).numpy()
        q = np.quantile(d, [0.25, 0.5, 0.75])
        rows[name] = {"group": group, "n": len(d), "q25": q[0], "median": q[1], "q75": q[2]}
    return pd.DataFrame.from_dict(rows, orient="index")


def coverage_bands(models: Mapping[tuple[str, int], nn.Module], data: Benchmark,
                   references: Mapping[int, nn.Module] | None = None, *,
                   space: str | Sequence[str] = "features", n_bands: int = 4,
                   score: str | Mapping[str, str] = "energy", tpr: float = 0.95):
    """FPR95 per band of distance to the pool, for every ``(label, seed) -> model`` (e.g.
    ``compare_methods(..., keep_models=True)[1]["models"]``).

    The outliers are all of ``data.ood`` and ``data.ood_uncovered`` together. Per seed, distances are taken
    in ``references[seed]``'s normalised feature space (or in input space) and cut into ``n_bands``
    equal-count bands, the same bands for every method of that seed. ``score``: one score for every model,
    or ``{label: score}`` (e.g. ``{"OE (MSP)": "msp"}``; labels left out use the energy). Returns a long DataFrame: seed, method,
    band (1 = nearest the pool), lo, hi, n, uncovered (share of the band's images from the uncovered sets),
    fpr95. ``space``: one of :data:`SPACES`, or a sequence of them (e.g. ``("features", "input")``): then a
    tuple of such frames, one per space in that order, each model scored once for all of them.
    """
    import pandas as pd

    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict {{(method, seed): model}}, got {validate.describe(models)}")
    spaces = (space,) if isinstance(space, str) else tuple(space)
    if not spaces or len(set(spaces)) != len(spaces):
        raise ValueError(f"space must be one of {SPACES} or a sequence of distinct ones, got {space!r}")
    for sp in spaces:
        _check_space(sp, references)
    if "features" in spaces:
        missing = sorted({seed for _, seed in models} - set(references))
        if missing:
            raise ValueError(f"no reference model for seed {missing[0]}; have seeds {sorted(references)}")
    sets = grouped_ood_sets(data)
    if not sets:
        raise ValueError("data has no OOD test sets")
    x = torch.cat([v for _, v in sets.values()])
    is_far = np.concatenate([np.full(len(v), g == "uncovered") for g, v in sets.values()])
    tf = data.eval_transform
    rows, dist = {sp: [] for sp in spaces}, {}  # distances and band edges per reference model (input space: None)
    for (label, seed), model in models.items():
        fn = score_fn(score if isinstance(score, str) else score.get(label, "energy"))
        id_s = fn(predict_logits(model, data.test_x, transform=tf), 1.0)
        ood_s = fn(predict_logits(model, x, transform=tf), 1.0)
        for sp in spaces:
            ref = references[seed] if sp == "features" else None
            if id(ref) not in dist:
                d = distance_to_pool(x, data.aux_x, ref, transform=tf).numpy()
                dist[id(ref)] = (d, band_edges(d, n_bands))
            d, edges = dist[id(ref)]
            band = assign_bands(d, edges)
            for r in fpr95_by_band(id_s, ood_s, d, edges=edges, tpr=tpr):
                sel = band == r["band"] - 1
                rows[sp].append({"seed": seed, "method": label, **r,
                                 "uncovered": float(is_far[sel].mean()) if sel.any() else float("nan")})
    frames = tuple(pd.DataFrame(rows[sp]) for sp in spaces)
    return frames[0] if isinstance(space, str) else frames


def evaluate_uncovered(models: Mapping[tuple[str, int], nn.Module], data: Benchmark,
                       score: str | Mapping[str, str] = "energy"):
    """Every ``(label, seed) -> model`` on ``data.ood_uncovered`` (the ID test set as usual): the long
    DataFrame of :func:`gregnb.calibration.evaluate_models_on`. ``score``: one score, or ``{label: score}``
    (labels left out use the energy), so each row is scored as it is on the covered sets."""
    import pandas as pd

    if not data.ood_uncovered:
        raise ValueError(f"the {data.name!r} benchmark has no uncovered OOD sets (data.ood_uncovered is empty)")
    groups: dict[str, dict] = {}
    for key, model in models.items():
        groups.setdefault(score if isinstance(score, str) else score.get(key[0], "energy"), {})[key] = model
    parts = [evaluate_models_on(g, data, data.ood_uncovered, score=s) for s, g in groups.items()]
    order = {key: i for i, key in enumerate(models)}
    out = pd.concat(parts, ignore_index=True)
    rank = [order[(m, sd)] for m, sd in zip(out["method"], out["seed"])]  # back in the models' order
    return out.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)


def covered_vs_uncovered(covered_df, uncovered_df):
    """The "mean" rows of two long results tables (:func:`gregnb.experiments.compare_methods` on ``data.ood``,
    :func:`gregnb.calibration.evaluate_models_on` on ``data.ood_uncovered``) stacked with ``ood`` renamed
    "covered" and "uncovered": ready for ``mean_std_table(..., "method", "ood", "fpr95")`` (side by side) and
    ``paired_verdict(..., ood="uncovered")``."""
    import pandas as pd

    parts = []
    for name, df in (("covered", covered_df), ("uncovered", uncovered_df)):
        rows = df[df["ood"] == "mean"]
        if rows.empty:
            raise ValueError(f"the {name} table has no 'mean' rows")
        parts.append(rows.assign(ood=name))
    return pd.concat(parts, ignore_index=True)
