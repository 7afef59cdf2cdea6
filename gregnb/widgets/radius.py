"""Chapter 06: certified radii as circles over the toy landscape. (E8) refers to docs/method.md."""
from __future__ import annotations

from typing import Mapping

import ipywidgets as W
import torch
from torch import nn

from ..data.base import Benchmark
from ..inference import predict_logits
from ..metrics import threshold_at_tpr
from ..scores import energy
from ..viz import make_grid, score_landscape
from .base import FigureExplorer

__all__ = ["radius_explorer"]


def radius_explorer(models: Mapping[str, nn.Module], data: Benchmark, eps_values=(0.1, 0.25, 0.5, 1.0), *,
                    n_points: int = 40, ood_name: str = "near", extent=(-6, 6, -6, 6), resolution: int = 100,
                    tpr: float = 0.95, steps: int = 10) -> FigureExplorer:
    """Certified radii (E8) as circles around toy points, over the energy landscape.

    Controls: ``model`` (e.g. energy loss vs GReg), ``eps`` (the ball on which L is taken: radii are
    capped at eps) and ``L`` ("local estimate": PGD estimate of sup ||grad E|| on each B_eps(x), not a
    guarantee; "global bound": product of spectral norms, sound but loose). Everything is precomputed.
    ``metrics``: median certified radius of the correctly detected ID and OOD points, the share of each
    certified at the full eps, and the global bound / median local estimate ratio.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    from ..lipschitz import certified_radius, global_lipschitz_bound, local_lipschitz

    if data.input_shape != (2,):
        raise ValueError("radius_explorer draws circles in the plane: use a 2-D benchmark")
    grid = make_grid(extent, resolution)
    pts_id, pts_ood = data.test_x[:n_points], data.ood[ood_name][:n_points]
    pts = torch.cat([pts_id, pts_ood])
    cache = {}
    for label, m in models.items():
        e_test = energy(predict_logits(m, data.test_x))
        t = -threshold_at_tpr(-e_test, tpr)  # energy threshold: ID if E <= t
        e_pts = energy(predict_logits(m, pts))
        cache[label] = dict(
            grid=(-energy(predict_logits(m, grid))).numpy().reshape(resolution, resolution), t=t, e=e_pts,
            glob=global_lipschitz_bound(m),
            local={eps: local_lipschitz(m, pts, eps, steps=steps) for eps in eps_values})
    is_id_true = torch.cat([torch.ones(len(pts_id), dtype=torch.bool), torch.zeros(len(pts_ood), dtype=torch.bool)])

    def draw(fig, model: str, eps: float, L: str) -> dict:
        c = cache[model]
        if not fig.axes:
            fig.add_axes((0.08, 0.1, 0.6, 0.82))
        ax = fig.axes[0]
        ax.cla()
        score_landscape(c["grid"], extent, ax, threshold=-c["t"], colorbar=False,
                        points={"ID": pts_id, ood_name: pts_ood}, point_size=8)
        lip = c["local"][eps] if L == "local estimate" else c["glob"]
        r = certified_radius(c["e"], c["t"], lip, eps=eps)
        correct = (c["e"] <= c["t"]) == is_id_true
        circles = [Circle((float(p[0]), float(p[1])), float(rr)) for p, rr, ok in zip(pts, r, correct) if ok and rr > 0]
        colors = ["#1f77b4" if i else "#d62728" for i, ok in zip(is_id_true, correct) if ok]
        colors = [col for col, rr, ok in zip(colors, r[correct], [True] * int(correct.sum())) if rr > 0]
        ax.add_collection(PatchCollection(circles, facecolors="none", edgecolors=colors, linewidths=0.8))
        ax.set_title(f"{model}: certified radii, ε = {eps:g}, L = {L}", fontsize=9)
        rid, rood = r[is_id_true & correct], r[~is_id_true & correct]
        med = lambda v: float(v.median()) if len(v) else float("nan")  # noqa: E731
        return {"median radius ID": med(rid), "median radius OOD": med(rood),
                "ID certified at ε": float((rid >= eps - 1e-12).double().mean()) if len(rid) else 0.0,
                "OOD certified at ε": float((rood >= eps - 1e-12).double().mean()) if len(rood) else 0.0,
                "global / median local": c["glob"] / float(c["local"][eps].median())}

    controls = {
        "model": W.Dropdown(options=list(models), value=next(iter(models)), description="model"),
        "eps": W.SelectionSlider(options=list(eps_values), value=eps_values[-1], description="ε",
                                 continuous_update=False),
        "L": W.ToggleButtons(options=["local estimate", "global bound"], value="local estimate", description="L"),
    }
    return FigureExplorer(controls, draw, figsize=(7.5, 5))
