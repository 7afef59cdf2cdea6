"""The explorer every chapter builds on: controls, a picture redrawn on a Figure pyplot never sees, metrics."""
from __future__ import annotations

import time
import traceback
from typing import Callable, Mapping

import ipywidgets as W
from matplotlib.figure import Figure

from ..viz import fig_to_png

__all__ = ["FigureExplorer"]


class FigureExplorer(W.VBox):
    """Controls + a figure redrawn by ``draw(fig, **values) -> dict of numbers``.

    The figure (``fig``) is a ``matplotlib.figure.Figure`` not registered with pyplot, so an explorer
    never leaves a figure open: Jupyter's inline backend cannot show it a second time, in another cell.

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
        # A figure of its own, unknown to pyplot: only ``image`` shows it. A pyplot figure would stay open
        # after the cell, and the inline backend would draw it again under the next cell that plots.
        self.fig = Figure(figsize=figsize)
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

    def _repr_mimebundle_(self, **kwargs):
        """The live widget, plus the current figure as a PNG: a static page (nbconvert, the rendered
        site) that cannot run widgets shows the figure instead of a placeholder."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            bundle = {}
        if self.image.value:
            import base64

            bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        return bundle

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


def _cleared_axes(fig, n: int = 2, **adjust) -> list:
    """The figure's ``n`` side-by-side axes, created on the first call and cleared on every call
    (explorers reuse their axes: rebuilding them costs more than redrawing)."""
    if not fig.axes:
        fig.subplots(1, n)
        fig.subplots_adjust(**{"left": 0.06, "right": 0.98, "bottom": 0.1, "top": 0.9, **adjust})
    axes = fig.axes[:n]
    for ax in axes:
        ax.cla()
    return axes
