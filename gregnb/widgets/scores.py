"""Chapters 00-01: the dataset browser and the temperature explorer."""
from __future__ import annotations


import ipywidgets as W
import numpy as np
import torch
from torch import nn

from ..data.base import Benchmark
from ..inference import predict_logits
from ..metrics import auroc, fpr_at_tpr, threshold_at_tpr
from ..scores import energy, msp
from ..viz import make_grid, score_histograms, score_landscape, show_images, threshold_contour
from .base import FigureExplorer

__all__ = ["temperature_explorer", "dataset_browser"]


def temperature_explorer(model: nn.Module, id_x: torch.Tensor, ood_x: torch.Tensor, *,
                         extent: tuple[float, float, float, float] | None = (-6, 6, -6, 6),
                         resolution: int = 120, ood_name: str = "OOD", tpr: float = 0.95) -> FigureExplorer:
    """How the temperature T changes the energy score (and MSP) of a trained classifier.

    Controls: ``T`` (log slider, 0.01 to 1000) and ``score`` ("energy" or "msp").
    Left: the score landscape over a 2-D grid with the 95%-TPR decision boundary (only for 2-D
    inputs and when ``extent`` is given). Right: ID vs OOD histograms of the score.
    ``metrics`` holds the FPR95 and AUROC at the current setting (ID positive, HIGH = ID).
    """
    id_logits = predict_logits(model, id_x)
    ood_logits = predict_logits(model, ood_x)
    grid_logits = None
    if extent is not None and id_x.ndim == 2 and id_x.shape[1] == 2:
        grid_logits = predict_logits(model, make_grid(extent, resolution))

    def high_is_id(logits: torch.Tensor, kind: str, T: float) -> np.ndarray:
        s = -energy(logits, T) if kind == "energy" else msp(logits, T)
        return s.double().numpy()

    state: dict = {}

    def setup(fig) -> None:
        if grid_logits is not None:
            ax_l, ax_h = fig.subplots(1, 2)
            score_landscape(np.zeros((resolution, resolution)), extent, ax_l, colorbar=False, point_size=4,
                            points={"ID": id_x[:300], ood_name: ood_x[:300]})
            state["image"] = ax_l.images[0]
            state["ax_l"] = ax_l
        else:
            ax_h = fig.subplots(1, 1)
        state["ax_h"] = ax_h
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9, wspace=0.25)

    def draw(fig, T: float, score: str) -> dict:
        # artists are reused between redraws: rebuilding axes and ticks costs more than the maths
        if not state:
            setup(fig)
        s_id, s_ood = high_is_id(id_logits, score, T), high_is_id(ood_logits, score, T)
        label = "−energy (high = ID)" if score == "energy" else "MSP (high = ID)"
        t = threshold_at_tpr(s_id, tpr)
        if grid_logits is not None:
            values = high_is_id(grid_logits, score, T).reshape(resolution, resolution)
            state["image"].set_data(values)
            state["image"].set_clim(values.min(), values.max())
            if state.get("contour") is not None:
                state["contour"].remove()
            state["contour"] = threshold_contour(state["ax_l"], values, extent, t)
            state["ax_l"].set_title(f"{label}, T = {T:.3g}", fontsize=9)
        ax_h = state["ax_h"]
        ax_h.cla()
        score_histograms(s_id, {ood_name: s_ood}, ax_h, tpr=tpr, xlabel=label, bins=40)
        return {"T": float(T), "FPR95": fpr_at_tpr(s_id, s_ood, tpr), "AUROC": auroc(s_id, s_ood)}

    controls = {
        "T": W.FloatLogSlider(value=1.0, base=10, min=-2, max=3, step=0.1, description="T",
                              continuous_update=False, readout_format=".3g"),
        "score": W.ToggleButtons(options=["energy", "msp"], value="energy", description="score"),
    }
    return FigureExplorer(controls, draw, figsize=(9, 3.6) if grid_logits is not None else (5.5, 3.4))


def dataset_browser(data: Benchmark, ncols: int = 16, nrows: int = 3) -> FigureExplorer:
    """Page through the parts of an image benchmark: ID train, the auxiliary pool, each OOD set.

    Controls: ``part`` (dropdown) and ``page`` (slider). ``metrics`` gives the part's size and mean
    pixel value, so one can see at a glance how different the sets are.
    """
    parts = {"ID train": data.train_x, "aux pool": data.aux_x, **{f"OOD: {k}": v for k, v in data.ood.items()}}
    per_page = ncols * nrows

    def draw(fig, part: str, page: int) -> dict:
        x = parts[part]
        if not fig.axes:
            fig.add_axes((0.01, 0.01, 0.98, 0.98))
        ax = fig.axes[0]
        ax.cla()
        start = min(page * per_page, max(0, len(x) - per_page))
        show_images(x[start:start + per_page], ncols=ncols, nrows=nrows, ax=ax)
        return {"part": part, "size": len(x), "mean pixel": float(x.mean())}

    controls = {
        "part": W.Dropdown(options=list(parts), value="ID train", description="part"),
        "page": W.IntSlider(value=0, min=0, max=19, description="page", continuous_update=False),
    }
    return FigureExplorer(controls, draw, figsize=(ncols * 0.45, nrows * 0.45), dpi=72)
