"""The digits sketchpad: draw an 8x8 input and read every model's verdict."""
from __future__ import annotations

from typing import Mapping

import ipywidgets as W
import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ..data.base import Benchmark
from ..inference import predict_logits
from ..scores import energy
from .canvas import BLACK, BLOCK, ID_RGB, INK_SIZE, OOD_RGB, _BOLD, _CanvasExplorer, _FONT, _render_once, _rgba, _segment_cells, drawing_to_input

__all__ = ["Sketchpad"]


class Sketchpad(_CanvasExplorer):
    """Draw with the mouse on a 32x32 pad (enlarged; faint lines: the 8x8 input pixels): per model, the class, E
    against γ (a marker on its ID / pooled-OOD test histograms), the decision, the gradient map; radii on "radii".
    Buttons clear, invert, load a random test digit / OOD image / pool image to edit; pen or eraser, brush width.

    ``models``: name -> trained digits model, e.g. ``{"CE": ce, "GReg": greg}``; ``data``: the digits benchmark
    (test digits set γ, test sets fill the histograms). ``cell_px``: screen pixels per cell; ``brush``: in cells;
    ``start``: ``"digit"`` (test digit 0) or ``"blank"``. ``eps_max``: radii searched up to this ℓ2 radius (pixel
    units); ``sound_method``: of :func:`gregnb.certify.sound_radius` ("crown": tight, seconds per model; "ibp":
    fast, loose; None: attack only); ``attack_steps``: PGD steps per bisection step. Attributes: ``ink`` (32x32),
    ``x`` (the input), ``readout`` / ``radii`` / ``metrics``, ``image`` (readout PNG), ``canvas``, ``timings_ms``.
    """

    RW, HEAD, ROW, PX = 600, 76, 112, 8  # readout width, header and row heights, screen px per input pixel
    canvas_shows_readout = False

    def __init__(self, models: Mapping[str, nn.Module], data: Benchmark, *, tpr: float = 0.95, cell_px: int = 8,
                 brush: int = 3, start: str = "digit", eps_max: float = 1.0, sound_method: str | None = "crown",
                 attack_steps: int = 10, seed: int = 0):
        if not isinstance(data, Benchmark) or data.input_shape != (1, 8, 8):
            raise ValueError("the sketchpad draws 8x8 digits: pass gregnb.data.digits.load_benchmark()")
        super().__init__(models, data.test_x, tpr, eps_max, sound_method, attack_steps)
        if not (isinstance(cell_px, int) and 2 <= cell_px <= 32) or start not in ("digit", "blank"):
            raise ValueError(f"cell_px must be a whole number in [2, 32] (got {cell_px!r}), start 'digit' or 'blank' "
                             f"(got {start!r})")
        self.data, self.cell_px, self._rng = data, cell_px, np.random.default_rng(seed)
        self._ood = torch.cat(list(data.ood.values()))
        some_ood = self._ood[torch.from_numpy(self._rng.permutation(len(self._ood))[:1000])]
        self._background({name: (self.id_energies[name], energy(predict_logits(m, some_ood)).double().numpy())
                          for name, m in self.models.items()})
        self.ink, self._pen, self.source = np.zeros((INK_SIZE, INK_SIZE)), None, "blank"
        self._make_canvas(INK_SIZE * cell_px, INK_SIZE * cell_px, {
            "clear": ("clear", lambda: self.set_ink(np.zeros((INK_SIZE, INK_SIZE)), "blank"), "an empty pad"),
            "invert": ("invert", lambda: self.set_ink(1 - self.ink, f"inverted {self.source}"), "1 - drawing"),
            "digit": ("test digit", lambda: self.load("digit"), "a random ID test digit"),
            "ood": ("OOD image", lambda: self.load("ood"), "a random OOD test image"),
            "pool": ("pool image", lambda: self.load("pool"), "a random training outlier"),
            "radii": ("radii", self.compute_radii, "attack and sound radii (seconds)")})
        for event, fn in (("down", self.pen_down), ("move", self.pen_move), ("up", self.pen_up), ("out", self.pen_up)):
            getattr(self.canvas, f"on_mouse_{event}")(lambda x, y, fn=fn: self._guard(fn, x, y))
        self.controls = {"mode": W.ToggleButtons(options=["pen", "eraser"], style={"button_width": "64px"}),
                         "brush": W.IntSlider(value=brush, min=1, max=6, description="brush", continuous_update=False)}
        W.VBox.__init__(self, [W.HBox([*self.controls.values(), *self.buttons.values()]),
                               W.HBox([self.canvas, self.image]), self.stats, self.status, self.output])
        if start == "digit":
            self.load("digit", index=0)
        else:
            self.set_ink(np.zeros((INK_SIZE, INK_SIZE)), "blank")

    @property
    def x(self) -> torch.Tensor:
        """The drawing as the models see it: ``(1, 1, 8, 8)`` float32 in [0, 1]."""
        return drawing_to_input(self.ink)

    def set_ink(self, ink, source: str = "drawing") -> None:
        """Replace the drawing by a ``(32, 32)`` array in [0, 1], or by an ``(8, 8)`` / ``(1, 8, 8)`` image (each
        pixel fills its 4x4 block, so the input is that image exactly), and update everything."""
        ink = np.asarray(ink.detach().cpu() if isinstance(ink, torch.Tensor) else ink, dtype=np.float64)
        if ink.shape in ((8, 8), (1, 8, 8)):
            ink = np.kron(ink.reshape(8, 8), np.ones((BLOCK, BLOCK)))
        drawing_to_input(ink)  # checks the shape and the range
        self.ink, self.source, self.radii, self.status.value = ink.copy(), source, {}, f"showing: {source}"
        self._repaint()
        self.update()

    def load(self, part: str, index: int | None = None) -> None:
        """Load an image to edit: ``"digit"`` (ID test), ``"ood"`` (the OOD test sets, pooled) or ``"pool"``
        (training outliers); number ``index`` of that part, or a random one."""
        sets = {"digit": self.data.test_x, "ood": self._ood, "pool": self.data.aux_x}
        if part not in sets:
            raise ValueError(f"part must be one of {list(sets)}, got {part!r}")
        i = int(self._rng.integers(len(sets[part]))) if index is None else index
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(sets[part]):
            raise ValueError(f"index must be a whole number in [0, {len(sets[part])}), got {index!r}")
        i = int(i)
        label = f" (label {int(self.data.test_y[i])})" if part == "digit" else ""
        self.set_ink(sets[part][i], f"{part} image #{i}{label}")

    def pen_down(self, x: float, y: float) -> None:
        """Start a stroke at canvas pixel ``(x, y)`` (the mouse-down callback)."""
        self._pen = (x / self.cell_px, y / self.cell_px)
        self.pen_move(x, y)

    def pen_move(self, x: float, y: float) -> None:
        """Extend the stroke to canvas pixel ``(x, y)`` (no model runs: the readout follows the stroke's end)."""
        if self._pen is None:
            return
        value, p = 1.0 if self.controls["mode"].value == "pen" else 0.0, (x / self.cell_px, y / self.cell_px)
        changed = _segment_cells(self._pen, p, self.controls["brush"].value / 2) & (self.ink != value)
        self._pen = p
        if changed.any():
            self.ink[changed], self.radii, self.source = value, {}, "drawing"
            (rows, cols), c = np.nonzero(changed), self.cell_px
            r0, r1, c0, c1 = rows.min() * c, (rows.max() + 1) * c, cols.min() * c, (cols.max() + 1) * c
            self.canvas.put_image_data(self._pad_rgba()[r0:r1, c0:c1], int(c0), int(r0))  # only what changed

    def pen_up(self, x: float, y: float) -> None:
        """End the stroke (mouse up, or the pointer leaving the pad) and update the readout."""
        if self._pen is not None:
            self.pen_move(x, y)
            self._pen, self.status.value = None, f"showing: {self.source}"
            self.update()

    def _pad_rgba(self) -> np.ndarray:
        """The pad as shown: the drawing's grey levels, the 8x8 input pixels' borders as faint blue lines."""
        c = self.cell_px
        rgb = np.repeat(np.repeat((self.ink * 255).round().astype(np.uint8), c, 0), c, 1)[..., None].repeat(3, 2)
        edge, tint = np.arange(len(rgb)) % (BLOCK * c) == 0, np.array([30, 45, 100], np.uint8)
        rgb[edge], rgb[:, edge] = rgb[edge] // 2 + tint, rgb[:, edge] // 2 + tint
        return _rgba(rgb)

    def _repaint(self) -> None:
        self.canvas.put_image_data(self._pad_rgba(), 0, 0)

    def _background(self, hists: dict) -> None:
        """Render the fixed part of the readout once: the header and each model's test histograms with γ."""
        rw, head, row, h, axes = self.RW, self.HEAD, self.ROW, self.HEAD + self.ROW * len(hists), {}

        def draw(fig):
            for i, (name, (e_id, e_ood)) in enumerate(hists.items()):
                ax = fig.add_axes((12 / rw, 1 - (head + i * row + row - 28) / h, 276 / rw, (row - 36) / h))
                lo, hi = np.percentile(np.concatenate([e_id, e_ood]), [0.5, 99.5])
                lo, hi = lo - 0.05 * (hi - lo) - 1e-3, hi + 0.05 * (hi - lo) + 1e-3
                for e, colour, label in ((e_id, "#1f77b4", "ID test"), (e_ood, "#d62728", "OOD test")):
                    ax.hist(np.clip(e, lo, hi), np.linspace(lo, hi, 41), density=True, color=colour, alpha=0.5,
                            label=label)
                ax.axvline(self.thresholds[name], color="k", ls="--", lw=1)
                ax.set(xlim=(lo, hi), yticks=[])
                ax.tick_params(labelsize=7, pad=1)
                ax.set_xlabel("energy E (low = ID); dashed: γ", fontsize=7, labelpad=1)
                if i == 0:
                    ax.legend(fontsize=7, loc="upper right", frameon=False)
                axes[name] = (ax, lo, hi)

        bg, box = _render_once(rw, h, draw)
        self._hist_px = {name: (lo, hi, *box(ax)) for name, (ax, lo, hi) in axes.items()}
        ImageDraw.Draw(im := Image.fromarray(bg)).multiline_text((158, 6), font=_FONT, fill=BLACK, spacing=3, text=(
            "← your drawing (32x32) and the 8x8 input the models see\n    (its 4x4 block means)\n"
            "gradient maps ∂E/∂x, "
            "each scaled to its max:\nred: more ink raises E (→ OOD), blue: lowers it (→ ID)"))
        self._bg, self._cmap = np.asarray(im).copy(), matplotlib.colormaps["RdBu_r"]

    def _paint(self) -> np.ndarray:
        img, px = self._bg.copy(), self.PX
        img[6:6 + 8 * px, 10:10 + 8 * px] = np.kron(self.ink * 255, np.ones((2, 2))).round()[..., None]
        img[6:6 + 8 * px, 84:84 + 8 * px] = np.kron((self.x[0, 0].numpy() * 255).round(), np.ones((px, px)))[..., None]
        for i, r in enumerate(self.readout.values()):
            g, y, k = r["grad"][0], self.HEAD + i * self.ROW + 8, 12
            rgb = self._cmap(0.5 + 0.5 * g / max(float(np.abs(g).max()), 1e-12))[..., :3]
            img[y:y + 8 * k, 300:300 + 8 * k] = (np.kron(rgb, np.ones((k, k, 1))) * 255).round().astype(np.uint8)
        d = ImageDraw.Draw(im := Image.fromarray(img))
        for i, (name, r) in enumerate(self.readout.items()):
            lo, hi, left, right, top, bottom = self._hist_px[name]
            frac = (r["E"] - lo) / (hi - lo)  # off the histogram's scale: the marker waits at its edge
            xm, colour = left + min(max(frac, 0.0), 1.0) * (right - left), ID_RGB if r["ID"] else OOD_RGB
            d.line([(xm, top), (xm, bottom)], fill=colour, width=3)
            d.polygon([(xm - 6, top - 7), (xm + 6, top - 7), (xm, top)], fill=colour)
            for k, (text, fill, font) in enumerate([(name, BLACK, _BOLD), *self._lines(name)]):
                d.text((406, self.HEAD + i * self.ROW + 4 + 14.5 * k), text, fill=fill, font=font)
        return np.asarray(im)
