"""Plots used across the chapters: score histograms with the 95%-TPR threshold, ROC curves,
and 2-D score landscapes.

Every function draws on a given matplotlib ``Axes`` (or makes one) and returns it, so the
notebooks compose figures and the widgets redraw them quickly. Given no ``Axes``, a function makes a
pyplot figure, for a notebook cell: Jupyter's inline backend shows it under that cell and closes it.
The explorers (:mod:`gregnb.widgets`) always pass axes of their own ``matplotlib.figure.Figure``, which
pyplot never sees, so no figure is left open to be shown again under a later cell.
Scores passed here are HIGH = ID unless ``low_is_id=True`` is given (raw energies).
"""
from __future__ import annotations

import io
from typing import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch

from .metrics import fpr_at_tpr, threshold_at_tpr

__all__ = ["tile_images", "show_images", "plot_toy", "score_histograms", "roc_plot", "make_grid", "grid_values", "threshold_contour", "score_landscape", "landscape_grid", "plot_histories", "plot_curves", "feature_pca", "fig_to_png",
           "ID_COLOR", "OOD_COLORS", "AUX_COLOR"]

ID_COLOR = "#1f77b4"
AUX_COLOR = "#7f7f7f"
OOD_COLORS = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_dict(ood) -> dict[str, np.ndarray]:
    if isinstance(ood, Mapping):
        return {k: _np(v) for k, v in ood.items()}
    return {"OOD": _np(ood)}


def tile_images(images, ncols: int = 16, nrows: int | None = None, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile ``(N, 1, H, W)`` or ``(N, H, W)`` images into one ``(rows*(H+pad), cols*(W+pad))`` mosaic;
    empty cells and the padding take ``fill`` (white by default)."""
    x = _np(images)
    if x.ndim == 4:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W) or (N, 1, H, W), got {x.shape}")
    n, h, w = x.shape
    nrows = nrows or max(1, int(np.ceil(n / ncols)))
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), fill, dtype=np.float64)
    for i in range(min(n, nrows * ncols)):
        r, c = divmod(i, ncols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = x[i]
    return out


def show_images(images, ncols: int = 16, nrows: int | None = None, ax=None, title: str | None = None,
                cmap: str = "gray"):
    """Show the first ``ncols*nrows`` images in [0, 1] as one mosaic (one imshow: fast to redraw)."""
    mosaic = tile_images(images, ncols, nrows)
    ax = ax or plt.subplots(figsize=(ncols * 0.45, mosaic.shape[0] / mosaic.shape[1] * ncols * 0.45 + 0.3))[1]
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return ax


def plot_toy(data, ax=None, *, parts=("train", "aux", "ood"), s: float = 5):
    """Scatter a 2-D :class:`~gregnb.data.Benchmark`: ID classes, the auxiliary pool, the OOD sets."""
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    if "aux" in parts:
        a = _np(data.aux_x)
        ax.scatter(a[:, 0], a[:, 1], s=s / 2, color=AUX_COLOR, alpha=0.35, label="aux pool (training outliers)")
    if "train" in parts:
        x, y = _np(data.train_x), _np(data.train_y)
        for k in range(data.n_classes):
            ax.scatter(x[y == k, 0], x[y == k, 1], s=s, label=f"ID class {k}")
    if "ood" in parts:
        for (name, pts), color in zip(data.ood.items(), OOD_COLORS):
            p = _np(pts)
            ax.scatter(p[:, 0], p[:, 1], s=s, marker="x", color=color, label=f"OOD test: {name}")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper left", markerscale=2, framealpha=0.8)
    return ax


def score_histograms(id_scores, ood_scores, ax=None, *, low_is_id: bool = False, tpr: float = 0.95,
                     bins: int = 50, xlabel: str = "score", title: str | None = None, show_fpr: bool = True):
    """Overlaid density histograms of ID and OOD scores with the threshold that accepts ``tpr`` of ID.

    Args:
        id_scores: ``(N,)`` scores of ID test samples.
        ood_scores: ``(M,)`` scores, or a dict name -> scores for several OOD sets.
        low_is_id: True for raw energies (LOW = ID); the threshold and FPR are then computed on
            the negated scores, and the accepted side is to the left of the line.
    """
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    id_s = _np(id_scores)
    oods = _as_dict(ood_scores)
    sign = -1.0 if low_is_id else 1.0
    allv = np.concatenate([id_s, *oods.values()])
    lo, hi = np.percentile(allv, [0.5, 99.5])
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    ax.hist(np.clip(id_s, lo, hi), bins=edges, density=True, alpha=0.55, color=ID_COLOR, label="ID (test)")
    t = sign * threshold_at_tpr(sign * id_s, tpr)
    for (name, s), color in zip(oods.items(), OOD_COLORS):
        label = name
        if show_fpr:
            label += f"  FPR{int(round(100 * tpr))} {100 * fpr_at_tpr(sign * id_s, sign * s, tpr):.1f}%"
        ax.hist(np.clip(s, lo, hi), bins=edges, density=True, alpha=0.45, color=color, label=label, histtype="stepfilled")
    ax.axvline(t, color="k", ls="--", lw=1.2)
    side = "≤" if low_is_id else "≥"
    ax.text(t, 0.02, f" accept as ID if {side} {t:.3g}", rotation=90, va="bottom", ha="right",
            fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper center" if low_is_id else "upper left", framealpha=0.8)
    if title:
        ax.set_title(title)
    return ax


def roc_plot(id_scores, ood_scores, ax=None, *, tpr: float = 0.95, title: str | None = None):
    """ROC curves (ID positive, scores HIGH = ID) with the operating point at ``tpr`` marked."""
    from sklearn.metrics import roc_auc_score, roc_curve

    ax = ax or plt.subplots(figsize=(4, 4))[1]
    id_s = _np(id_scores)
    for (name, s), color in zip(_as_dict(ood_scores).items(), OOD_COLORS):
        y = np.r_[np.ones(len(id_s)), np.zeros(len(s))]
        v = np.r_[id_s, s]
        fpr, tpr_curve, _ = roc_curve(y, v)
        ax.plot(fpr, tpr_curve, color=color, label=f"{name} (AUROC {100 * roc_auc_score(y, v):.1f}%)")
        ax.plot([fpr_at_tpr(id_s, s, tpr)], [tpr], "o", color=color)
    ax.axhline(tpr, color="k", ls=":", lw=1)
    ax.plot([0, 1], [0, 1], color="0.7", lw=1)
    ax.set_xlabel("false-positive rate (OOD accepted)")
    ax.set_ylabel("true-positive rate (ID accepted)")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return ax


def make_grid(extent: tuple[float, float, float, float] = (-6, 6, -6, 6), n: int = 150) -> torch.Tensor:
    """``(n*n, 2)`` float32 grid points over ``extent = (xmin, xmax, ymin, ymax)``, row-major from ymin."""
    xs = torch.linspace(extent[0], extent[1], n)
    ys = torch.linspace(extent[2], extent[3], n)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


@torch.no_grad()
def grid_values(fn: Callable[[torch.Tensor], torch.Tensor], extent=(-6, 6, -6, 6), n: int = 150) -> np.ndarray:
    """Evaluate ``fn`` (``(M, 2) -> (M,)``) on :func:`make_grid`; returns an ``(n, n)`` array for imshow."""
    return fn(make_grid(extent, n)).detach().cpu().double().numpy().reshape(n, n)


def threshold_contour(ax, values: np.ndarray, extent, threshold: float):
    """Draw the decision boundary ``values == threshold`` (dashed white) over a landscape drawn with
    :func:`score_landscape`; returns the contour set (to remove it later), or None when the threshold
    lies outside the values' range."""
    if not np.nanmin(values) < threshold < np.nanmax(values):
        return None
    xs = np.linspace(extent[0], extent[1], values.shape[1])
    ys = np.linspace(extent[2], extent[3], values.shape[0])
    return ax.contour(xs, ys, values, levels=[threshold], colors="white", linestyles="--", linewidths=1.5)


def score_landscape(values: np.ndarray, extent=(-6, 6, -6, 6), ax=None, *, points: Mapping | None = None,
                    threshold: float | None = None, cmap: str = "viridis", label: str = "score",
                    colorbar: bool = True, vmin=None, vmax=None, point_size: float = 6):
    """A 2-D score landscape: ``values`` (``(n, n)`` from :func:`grid_values`) as an image, the
    threshold as a contour line, and point sets drawn on top.

    Args:
        points: name -> ``(M, 2)`` arrays, drawn as scatter (ID first, in blue, then OOD colours).
        threshold: draw the decision boundary ``score = threshold`` (dashed white line).
    """
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    im = ax.imshow(values, origin="lower", extent=extent, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax,
                   interpolation="bilinear")
    if threshold is not None:
        threshold_contour(ax, values, extent, threshold)
    colors = [ID_COLOR] + OOD_COLORS
    for (name, pts), color in zip((points or {}).items(), colors):
        p = _np(pts)
        ax.scatter(p[:, 0], p[:, 1], s=point_size, color=color, label=name, edgecolors="white", linewidths=0.2)
    if points:
        ax.legend(fontsize=7, loc="lower left", markerscale=2, framealpha=0.8)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=label, fraction=0.046, pad=0.04)
    return ax


def landscape_grid(models: Mapping, data, *, rows=("energy",), extent=(-6, 6, -6, 6), n: int = 120,
                   ood: str | None = "near", tpr: float = 0.95, show_aux: bool = False, fig=None):
    """Score landscapes of several 2-D models side by side (one column per model).

    Args:
        models: label -> model (2-D inputs).
        data: the toy :class:`~gregnb.data.Benchmark` (its ``test_x`` sets the thresholds).
        rows: any of ``"energy"`` (drawn as −E, HIGH = ID, with the 95%-TPR boundary), ``"msp"``,
            and ``"grad"`` (``||grad_x E||``, the local slope GReg penalises; log colour scale).
        ood: an OOD set drawn on top (or None); ``show_aux`` also draws the auxiliary pool.
    """
    from matplotlib.colors import LogNorm

    from .evaluate import predict_logits
    from .lipschitz import input_gradient_norm
    from .scores import energy, msp

    fig = fig or plt.figure(figsize=(3.6 * len(models), 3.3 * len(rows)))
    axes = fig.subplots(len(rows), len(models), squeeze=False)
    points = {"ID": data.test_x[:300]}
    if ood:
        points[ood] = data.ood[ood][:300]
    if show_aux:
        points["aux"] = data.aux_x[:300]
    grid = make_grid(extent, n)
    for c, (label, model) in enumerate(models.items()):
        for r, row in enumerate(rows):
            ax = axes[r, c]
            if row == "grad":
                vals = input_gradient_norm(model, grid).numpy().reshape(n, n)
                im = ax.imshow(np.maximum(vals, 1e-3), origin="lower", extent=extent, cmap="magma", aspect="auto",
                               norm=LogNorm(vmin=1e-2, vmax=max(vals.max(), 1e-1)))
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="‖∇ₓE‖")
                for (name, pts), color in zip(points.items(), [ID_COLOR] + OOD_COLORS):
                    p = _np(pts)
                    ax.scatter(p[:, 0], p[:, 1], s=3, color=color, label=name)
            else:
                fn = (lambda z: -energy(z)) if row == "energy" else msp
                vals = fn(predict_logits(model, grid)).numpy().reshape(n, n)
                t = threshold_at_tpr(fn(predict_logits(model, data.test_x)), tpr)
                score_landscape(vals, extent, ax, points=points, threshold=t, point_size=3,
                                label="−energy" if row == "energy" else "MSP")
            ax.set_title(f"{label}: {dict(energy='−energy', msp='MSP', grad='‖∇ₓE‖')[row]}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_histories(histories: Mapping[str, Mapping[str, list]], key: str, ax=None, *, ylabel: str | None = None,
                   logy: bool = False):
    """One line per run of ``history[key]`` against the epoch. ``histories`` maps a label to a
    history, or to a list of histories (several seeds: drawn as mean with a min-max band)."""
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    for i, (label, h) in enumerate(histories.items()):
        runs = h if isinstance(h, (list, tuple)) else [h]
        arr = np.array([r[key] for r in runs], dtype=float)
        epochs = np.arange(1, arr.shape[1] + 1)
        color = f"C{i}"
        ax.plot(epochs, arr.mean(0), color=color, marker="o" if len(epochs) == 1 else None,  # one epoch: a point
                label=label + (f" (mean of {len(runs)})" if len(runs) > 1 else ""))
        if len(runs) > 1:
            ax.fill_between(epochs, arr.min(0), arr.max(0), color=color, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or key)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return ax


def plot_curves(x, curves: Mapping[str, list], ax=None, *, xlabel: str = "", ylabel: str = "", styles=None):
    """Curves over seeds: ``curves`` maps a label to a list of ``(len(x),)`` arrays (one per seed),
    drawn as the mean with a min-max band. ``styles`` maps a label to matplotlib keyword arguments."""
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    xs = _np(x)
    for i, (label, runs) in enumerate(curves.items()):
        arr = np.stack([_np(r) for r in runs])
        kw = {"color": f"C{i}", **(styles or {}).get(label, {})}
        ax.plot(xs, arr.mean(0), label=label + (f" ({len(runs)} seeds)" if len(runs) > 1 else ""), **kw)
        if len(runs) > 1:
            ax.fill_between(xs, arr.min(0), arr.max(0), color=kw["color"], alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


def feature_pca(parts: Mapping, ax=None, *, fit_on: str | None = None, max_points: int = 1500, normalise: bool = True):
    """Scatter penultimate features of several sets in the plane of their first two principal components.

    Args:
        parts: name -> ``(N, D)`` features (e.g. ID, pool, picks). Rows are L2-normalised first
            (as the sampler does) when ``normalise``.
        fit_on: the part whose PCA defines the plane (default: all parts together).
    """
    from sklearn.decomposition import PCA

    ax = ax or plt.subplots(figsize=(5, 4.5))[1]
    arrays = {}
    for k, v in parts.items():
        a = _np(v)[:max_points]
        if normalise:
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        arrays[k] = a
    basis = arrays[fit_on] if fit_on else np.concatenate(list(arrays.values()))
    pca = PCA(2).fit(basis)
    colors = [ID_COLOR, AUX_COLOR] + OOD_COLORS
    for (k, a), color in zip(arrays.items(), colors):
        z = pca.transform(a)
        ax.scatter(z[:, 0], z[:, 1], s=6, color=color, alpha=0.6, label=f"{k} ({len(a)})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=2)
    return ax


def fig_to_png(fig, dpi: int = 80) -> bytes:
    """Render a figure to PNG bytes (what the widgets display)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


#: colours and markers of the radii in chapter 07 (sound certificates, the truth, estimates, attacks)
RADIUS_STYLES = {"global": dict(color="#7f7f7f", marker="v"), "ibp": dict(color="#9467bd", marker="s"),
                 "crown": dict(color="#2ca02c", marker="o"), "grid": dict(color="#000000", marker="*"),
                 "local estimate": dict(color="#ff7f0e", marker="x"), "attack": dict(color="#d62728", marker="^")}


def radius_circles(ax, points, radii: Mapping[str, object], *, styles: Mapping | None = None, linewidth: float = 1.2):
    """Draw, around each 2-D point, one circle per entry of ``radii`` (label -> ``(N,)`` radii in input
    units; a radius of 0 or inf draws nothing). Colours from :data:`RADIUS_STYLES` unless ``styles``
    (label -> matplotlib keyword arguments) says otherwise; one legend entry per label. Returns ``ax``."""
    from matplotlib.patches import Circle

    p = _np(points)
    for label, r in radii.items():
        r = _np(r)
        if len(r) != len(p):
            raise ValueError(f"radii[{label!r}] has {len(r)} values for {len(p)} points")
        kw = {"color": RADIUS_STYLES.get(label, {}).get("color", "C0"), **(styles or {}).get(label, {})}
        for (cx, cy), rad in zip(p, r):
            if 0 < rad < np.inf:
                ax.add_patch(Circle((cx, cy), rad, fill=False, lw=linewidth, **kw))
        ax.plot([], [], lw=linewidth, label=label, **kw)
    ax.set_aspect("equal", adjustable="box")
    return ax


def sandwich_plot(radii: Mapping[str, object], ax=None, *, order_by: str = "crown", floor: float = 1e-4,
                  scale: float | None = None, scale_label: str = "scale", title: str | None = None):
    """Per-point radii of several methods on a log axis, points sorted by ``radii[order_by]``.

    ``radii``: label -> ``(N,)`` radii (the same N points); zeros (misdetected or uncertified) are drawn at
    ``floor``, infinities (an attack that never succeeded) are left out. ``scale`` draws a reference
    line (e.g. the distance to the nearest digit of another class). Returns ``ax``."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]  # like every helper here: shown under the calling cell
    order = np.argsort(_np(radii[order_by]), kind="stable")
    for label, r in radii.items():
        r = _np(r)[order]
        style = RADIUS_STYLES.get(label, {"marker": "o"})
        keep = np.isfinite(r)
        ax.scatter(np.arange(len(r))[keep], np.maximum(r[keep], floor), s=14, label=label, **style)
    if scale is not None:
        ax.axhline(scale, color="k", ls=":", lw=1, label=scale_label)
    ax.set_yscale("log")
    ax.set_xlabel(f"point (sorted by {order_by} radius)")
    ax.set_ylabel("ℓ2 radius")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return ax


__all__ += ["RADIUS_STYLES", "radius_circles", "sandwich_plot"]


def plot_bands(df, ax=None, *, value: str = "fpr95", methods=None):
    """``value`` (%) per band of distance to the pool (:func:`gregnb.coverage.coverage_bands`'s DataFrame):
    one line per method, the mean over seeds with a ± std band; band 1 is the nearest quarter of the outliers."""
    if ax is None:
        ax = plt.subplots(figsize=(5.5, 3.4))[1]
    stats = df.groupby(["method", "band"])[value].agg(["mean", "std", "count"]).fillna(0.0)
    for i, m in enumerate(methods or list(dict.fromkeys(df["method"]))):
        s = stats.loc[m]
        ax.plot(s.index, 100 * s["mean"], "o-", color=f"C{i}", label=f"{m} ({int(s['count'].max())} seeds)")
        ax.fill_between(s.index, 100 * (s["mean"] - s["std"]), 100 * (s["mean"] + s["std"]), color=f"C{i}", alpha=0.15)
    bands = sorted(df["band"].unique())
    ax.set_xticks(bands, [f"{b}\n{'nearest' if b == bands[0] else 'farthest' if b == bands[-1] else ''}" for b in bands])
    ax.set_xlabel("band of distance to the nearest pool image")
    ax.set_ylabel(f"{value.upper() if value == 'fpr95' else value} (%)")
    ax.legend(fontsize=7)
    return ax


__all__ += ["plot_bands"]
