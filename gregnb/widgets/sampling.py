"""Chapter 05: Algorithm 1 of GReg+ step by step."""
from __future__ import annotations


import ipywidgets as W
import numpy as np
import torch
from torch import nn

from ..data.base import Benchmark
from ..inference import eval_mode
from ..scores import energy
from .base import FigureExplorer, _cleared_axes

__all__ = ["sampling_explorer"]


def sampling_explorer(model: nn.Module, data: Benchmark, *, batch_size: int = 64, n_draws: int = 8,
                      max_k: int = 64) -> FigureExplorer:
    """Algorithm 1 of GReg+ step by step on 2-D data, in the regime training uses.

    Each draw is one training step's candidate batch: ``6 x batch_size`` pool points (384 by default),
    selected through :func:`gregnb.sampling.plan_selection` as :func:`gregnb.train.fit` does (picks 2x the
    batch two-way, 1x one-way). Controls: ``stage`` (1 candidates by energy, 2 normalised features,
    3 clusters, 4 picks), ``k`` (clusters), ``window`` (energy-rank slice kept), ``two_way``, ``draw``.
    Left: the candidates in input space; right: their normalised penultimate features in the plane of
    the first two principal components. Picks: triangles = a cluster's lowest energy (hard), squares = its
    highest (already detected), diamonds = random fills (when clusters are too small to fill the picks).
    ``metrics``: numbers of picks of each kind and their mean energies; a setting the selection refuses
    (e.g. more picks than the window keeps) is reported there instead of drawn.
    """
    from sklearn.decomposition import PCA

    from ..sampling import kmeans, plan_selection

    if data.input_shape != (2,):
        raise ValueError("sampling_explorer draws inputs in the plane: use a 2-D benchmark (gregnb.data.toy2d)")
    n_candidates = plan_selection("energy_cluster", batch_size).n_candidates
    gen = torch.Generator().manual_seed(0)
    draws = []
    with eval_mode(model):
        with torch.no_grad():
            for _ in range(n_draws):
                cand = data.aux_x[torch.randint(len(data.aux_x), (n_candidates,), generator=gen)]
                logits, feats = model(cand, return_features=True)
                f = feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)
                draws.append(dict(x=cand.numpy(), feats=feats, energy=energy(logits), fz=PCA(2).fit_transform(f.numpy())))
    id_pts = data.train_x[:400].numpy()
    markers = {0: ("^", "r", "hard", "lowest energy (hard)"), 1: ("s", "k", "detected", "highest energy (detected)"),
               2: ("D", "tab:blue", "fill", "random fill")}

    def draw(fig, stage: str, k: int, window: tuple, two_way: bool, draw_index: int) -> dict:
        d = draws[draw_index]
        ax_x, ax_f = _cleared_axes(fig, 2, left=0.05, wspace=0.15)
        ax_x.scatter(id_pts[:, 0], id_pts[:, 1], s=3, color="0.8", label="ID (train)")
        start, end = window
        keep = d["energy"].argsort()[start:end]
        in_window = np.zeros(n_candidates, bool)
        in_window[keep.numpy()] = True
        n_stage = int(stage[0])
        kk = min(k, int(in_window.sum()))
        if n_stage <= 2:
            color, cmap = d["energy"].numpy(), "viridis"
        else:
            f = d["feats"][keep]
            labels, _ = kmeans(f / f.norm(dim=1, keepdim=True).clamp_min(1e-12), kk,
                               generator=torch.Generator().manual_seed(draw_index))
            color = np.full(n_candidates, -1.0)
            color[keep.numpy()] = labels.numpy()
            cmap = "tab20"
        shown = in_window if n_stage >= 2 else np.ones(n_candidates, bool)
        for ax, pts in ((ax_x, d["x"]), (ax_f, d["fz"])):
            ax.scatter(pts[~shown, 0], pts[~shown, 1], s=6, color="0.85", marker="x")
            ax.scatter(pts[shown, 0], pts[shown, 1], s=10, c=color[shown], cmap=cmap)
        out = {"candidates kept": int(shown.sum())}
        if n_stage == 4:
            try:
                plan = plan_selection("energy_cluster", batch_size, n_clusters=kk, two_way=two_way,
                                      window=(start, end))
            except ValueError as err:
                out["selection refused"] = str(err)
            else:
                idx, roles = plan.select(d["feats"], d["energy"], generator=torch.Generator().manual_seed(draw_index),
                                         return_roles=True)
                idx, roles, e = idx.numpy(), roles.numpy(), d["energy"].numpy()
                out["mean E candidates"] = float(e.mean())
                for role, (marker, colour, key, label) in markers.items():
                    sel = idx[roles == role]
                    out[f"{key} picks"] = len(sel)
                    if len(sel):
                        out[f"mean E {key}"] = float(e[sel].mean())
                        for ax, pts in ((ax_x, d["x"]), (ax_f, d["fz"])):
                            ax.scatter(pts[sel, 0], pts[sel, 1], s=60, marker=marker, facecolors="none",
                                       edgecolors=colour, lw=1.5, label=label)
        titles = {1: "candidates, coloured by energy", 2: "kept by the window, by energy",
                  3: f"k-means on normalised features (k={kk})", 4: "picks per cluster"}
        ax_x.set_title(f"input space: {titles[n_stage]}", fontsize=9)
        ax_f.set_title("normalised features (PCA plane)", fontsize=9)
        ax_x.legend(fontsize=7, loc="lower left")
        return out

    controls = {
        "stage": W.ToggleButtons(options=["1 candidates", "2 features", "3 clusters", "4 picks"], value="4 picks",
                                 description="stage"),
        "k": W.IntSlider(value=min(batch_size, max_k), min=2, max=max_k, description="k", continuous_update=False),
        "window": W.IntRangeSlider(value=(0, n_candidates), min=0, max=n_candidates, description="window",
                                   continuous_update=False),
        "two_way": W.Checkbox(value=True, description="two-way"),
        "draw_index": W.IntSlider(value=0, min=0, max=n_draws - 1, description="draw", continuous_update=False),
    }
    return FigureExplorer(controls, draw, figsize=(10, 4.2))
