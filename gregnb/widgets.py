"""Interactive explorers built on :mod:`gregnb.viz`.

Each explorer is a function that returns a :class:`FigureExplorer` (an ``ipywidgets.VBox``):
controls on top, the figure as a PNG ``ipywidgets.Image`` below, a line of numbers, and an
``Output`` that shows errors instead of swallowing them. Tests drive an explorer by setting
``explorer.controls[name].value`` and reading ``explorer.image.value`` / ``explorer.metrics``.

Heavy work (model outputs on a grid, on the test sets) is done once when the explorer is
built; a control change only recomputes cheap functions of those cached outputs.
"""
from __future__ import annotations

import time
import traceback
from typing import Callable, Mapping

import ipywidgets as W
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import copy

from .evaluate import evaluate, predict_logits
from .losses import energy_margin_loss
from .metrics import auroc, fpr_at_tpr, threshold_at_tpr
from .scores import energy, msp
from .data.base import Benchmark
from .viz import fig_to_png, make_grid, score_histograms, score_landscape, show_images

__all__ = ["FigureExplorer", "temperature_explorer", "dataset_browser", "margin_explorer"]


class FigureExplorer(W.VBox):
    """Controls + a figure redrawn by ``draw(fig, **values) -> dict of numbers``.

    Attributes:
        controls: name -> widget; each change redraws.
        image: the rendered figure (PNG bytes in ``image.value``).
        metrics: the dict the last ``draw`` returned.
        error: the last redraw's error message (also shown in ``output``), or None.
        timings_ms: redraw times (compute + render), for the benchmark.
    """

    def __init__(self, controls: Mapping[str, W.ValueWidget], draw: Callable[..., dict], figsize=(9, 3.6), dpi: int = 72,
                 buttons: Mapping[str, Callable[[], None]] | None = None):
        self.controls = dict(controls)
        self.buttons: dict[str, W.Button] = {}
        for label, action in (buttons or {}).items():
            button = W.Button(description=label, button_style="primary", layout=W.Layout(width="auto"))
            button.on_click(lambda _b, act=action: self.run_action(act))
            self.buttons[label] = button
        self._draw = draw
        self._dpi = dpi
        was_interactive = matplotlib.is_interactive()
        plt.ioff()
        self.fig = plt.figure(figsize=figsize)
        if was_interactive:
            plt.ion()
        self.image = W.Image(format="png")
        self.stats = W.HTML()
        self.output = W.Output()
        self.metrics: dict = {}
        self.error: str | None = None
        self.timings_ms: list[float] = []
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        super().__init__([W.HBox([*self.controls.values(), *self.buttons.values()]), self.image, self.stats,
                          self.output])
        self.redraw()

    def run_action(self, action: Callable[[], None]) -> None:
        """Run a button's action (e.g. retrain), then redraw; errors go to ``output`` like redraws'."""
        for b in self.buttons.values():
            b.disabled = True
        try:
            action()
        except Exception as err:
            self.error = f"Action failed: {type(err).__name__}: {err}"
            self.output.outputs = ()
            self.output.append_stdout(self.error + "\n" + traceback.format_exc())
            return
        finally:
            for b in self.buttons.values():
                b.disabled = False
        self.redraw()

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def _on_change(self, _change=None) -> None:
        self.redraw()

    def redraw(self) -> None:
        t0 = time.perf_counter()
        try:
            self.metrics = self._draw(self.fig, **self.values()) or {}
            self.image.value = fig_to_png(self.fig, dpi=self._dpi)
            self.stats.value = " &nbsp; ".join(f"<b>{k}</b>: {v:.3g}" if isinstance(v, float) else f"<b>{k}</b>: {v}"
                                               for k, v in self.metrics.items())
            if self.output.outputs:
                self.output.outputs = ()
            self.error = None
        except Exception as err:  # shown to the student, not swallowed
            self.error = f"Could not redraw: {type(err).__name__}: {err}"
            self.output.outputs = ()
            # append_stdout works with or without a running kernel (tests read .outputs)
            self.output.append_stdout(self.error + "\n" + traceback.format_exc())
        self.timings_ms.append(1000 * (time.perf_counter() - t0))


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
                state["contour"] = None
            if values.min() < t < values.max():
                xs = np.linspace(extent[0], extent[1], resolution)
                ys = np.linspace(extent[2], extent[3], resolution)
                state["contour"] = state["ax_l"].contour(xs, ys, values, levels=[t], colors="white",
                                                         linestyles="--", linewidths=1.5)
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


def margin_explorer(model: nn.Module, data: Benchmark, m_in: float, m_out: float, *, method: str = "energy",
                    retrain_epochs: int = 10, max_samples: int = 2000, **fit_kwargs) -> FigureExplorer:
    """The energy margins over live histograms, with a button that retrains.

    Shows the energies (LOW = ID) of ID training samples and of the auxiliary pool under the
    current model, with ``m_in`` and ``m_out`` as lines. ``metrics``: the share of ID samples past
    ``m_in`` (the energy loss ignores them; GReg flattens them), the share of pool samples past
    ``m_out``, the energy loss (E4) at these margins, and the current model's test FPR95 / AUROC.

    The button "retrain" fine-tunes a fresh copy of ``model`` (the one passed in, not the last
    retrained one) with ``method`` at the chosen margins for ``retrain_epochs`` epochs, then shows it.
    """
    from .train import fit

    base = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(0)
    id_x = data.train_x[torch.randperm(len(data.train_x), generator=gen)[:max_samples]]
    aux_x = data.aux_x[torch.randperm(len(data.aux_x), generator=gen)[:max_samples]]
    state: dict = {}

    def measure(m: nn.Module, label: str) -> None:
        state["model"], state["label"] = m, label
        state["e_id"] = energy(predict_logits(m, id_x)).double()
        state["e_aux"] = energy(predict_logits(m, aux_x)).double()
        res = evaluate(m, data)
        state["fpr95"], state["auroc"] = res["mean"]["fpr95"], res["mean"]["auroc"]

    measure(base, "given model")
    lo = float(min(state["e_id"].min(), state["e_aux"].min(), m_in)) - 1.0
    hi = float(max(state["e_id"].max(), state["e_aux"].max(), m_out)) + 1.0

    def draw(fig, m_in: float, m_out: float) -> dict:
        if not fig.axes:
            fig.add_axes((0.08, 0.17, 0.9, 0.73))
        ax = fig.axes[0]
        ax.cla()
        edges = np.linspace(lo, hi, 60)
        ax.hist(state["e_id"].clamp(lo, hi).numpy(), bins=edges, density=True, alpha=0.55, label="ID (train)")
        ax.hist(state["e_aux"].clamp(lo, hi).numpy(), bins=edges, density=True, alpha=0.45, color="0.45",
                label="aux pool")
        ax.axvline(m_in, color="C0", lw=2, ls="--", label=f"m_in = {m_in:.2f}")
        ax.axvline(m_out, color="C3", lw=2, ls="--", label=f"m_out = {m_out:.2f}")
        ax.set_xlabel("energy (low = ID)")
        ax.set_ylabel("density")
        ax.set_title(state["label"], fontsize=9)
        ax.legend(fontsize=8)
        valid = m_in < m_out
        loss = energy_margin_loss(state["e_id"], state["e_aux"], m_in, m_out).item() if valid else float("nan")
        return {"ID past m_in": float((state["e_id"] <= m_in).double().mean()),
                "aux past m_out": float((state["e_aux"] >= m_out).double().mean()),
                "energy loss": loss, "test FPR95 (mean)": state["fpr95"], "test AUROC (mean)": state["auroc"]}

    def retrain() -> None:
        mi, mo = state_controls["m_in"].value, state_controls["m_out"].value
        if not mi < mo:
            raise ValueError(f"m_in ({mi:.2f}) must be below m_out ({mo:.2f}): low energy = ID")
        m = copy.deepcopy(base)
        fit(m, data, method, epochs=retrain_epochs, m_in=mi, m_out=mo, progress=False, **fit_kwargs)
        measure(m, f"after {retrain_epochs} epochs of {method!r} at m_in={mi:.2f}, m_out={mo:.2f}")

    step = (hi - lo) / 200
    state_controls = {
        "m_in": W.FloatSlider(value=m_in, min=lo, max=hi, step=step, description="m_in", continuous_update=False),
        "m_out": W.FloatSlider(value=m_out, min=lo, max=hi, step=step, description="m_out", continuous_update=False),
    }
    ex = FigureExplorer(state_controls, draw, figsize=(7, 3.3), buttons={"retrain with these margins": retrain})
    ex.state = state
    return ex
