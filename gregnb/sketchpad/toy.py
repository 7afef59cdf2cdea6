"""The 2-D toy explorer: click a point on a score landscape and read every model's verdict."""
from __future__ import annotations

import math
from typing import Mapping

import ipywidgets as W
import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ..data.base import Benchmark
from ..inference import predict_logits
from ..scores import energy
from ..viz import make_grid, score_landscape
from .canvas import BLACK, ID_RGB, OOD_RGB, _CanvasExplorer, _blit, _render_once

__all__ = ["PointExplorer"]


class PointExplorer(_CanvasExplorer):
    """The 2-D toy: click on any model's −E landscape (dashed: E = γ; dots: ID and ``ood_name`` test points) to place
    a point; each panel shows it (green: ID, red: OOD), an arrow along +∇E (towards OOD), the sound radius (white
    circle), the attack radius (dotted red) and the readout. Radii follow each click unless ``radii=False``;
    ``sound_method`` "grid" is near-exact in 2-D; other arguments as for :class:`Sketchpad`. ``x``: the point, (1, 2).
    """

    TEXT = 96  # px of readout text under each panel
    canvas_shows_readout = True

    def __init__(self, models: Mapping[str, nn.Module], data: Benchmark, *, extent=(-6, 6, -6, 6),
                 resolution: int = 100, ood_name: str = "near", tpr: float = 0.95, panel_px: int = 280,
                 radii: bool = True, eps_max: float = 2.0, sound_method: str | None = "grid", attack_steps: int = 10,
                 n_points: int = 200, start=(0.0, 0.0)):
        if not isinstance(data, Benchmark) or data.input_shape != (2,) or ood_name not in data.ood:
            raise ValueError(f"the point explorer needs a 2-D benchmark (gregnb.data.toy2d) with an OOD set "
                             f"{ood_name!r}")
        super().__init__(models, data.test_x, tpr, eps_max, sound_method, attack_steps)
        self.extent, self.radii_on_click, self.panel_px = tuple(float(v) for v in extent), radii, int(panel_px)
        grid, n, w, axes = make_grid(extent, resolution), len(self.models), self.panel_px, []
        h = w + self.TEXT

        def draw(fig):
            for i, (name, m) in enumerate(self.models.items()):
                axes.append(ax := fig.add_axes(((i * w + 30) / (n * w), (self.TEXT + 18) / h, (w - 44) / (n * w),
                                                (w - 44) / h)))  # square: radius circles are circles
                score_landscape((-energy(predict_logits(m, grid))).numpy().reshape(resolution, resolution), extent, ax,
                                threshold=-self.thresholds[name], colorbar=False, point_size=3,
                                points={"ID": data.test_x[:n_points], ood_name: data.ood[ood_name][:n_points]})
                ax.set_title(f"{name}: −E (click to place a point)", fontsize=9)
                ax.tick_params(labelsize=7)

        self._bg, box = _render_once(n * w, h, draw)
        self._boxes = [box(ax) for ax in axes]
        self._make_canvas(n * w, h, {"radii": ("radii", self.compute_radii, "attack and sound radii")})
        self.canvas.on_mouse_down(lambda x, y: self._guard(self.click, x, y))
        W.VBox.__init__(self, [W.HBox(list(self.buttons.values())), self.canvas, self.stats, self.status, self.output])
        self.place(start)

    def to_pixel(self, i: int, p) -> tuple[float, float, float, float]:
        """Canvas pixel (x, y) of the data point ``p`` in panel ``i``, and the pixels per data unit along x, y."""
        (left, right, top, bottom), (x0, x1, y0, y1) = self._boxes[i], self.extent
        sx, sy = (right - left) / (x1 - x0), (bottom - top) / (y1 - y0)
        return left + (float(p[0]) - x0) * sx, bottom - (float(p[1]) - y0) * sy, sx, sy

    def click(self, x: float, y: float) -> None:
        """The mouse-down callback: place the point under canvas pixel ``(x, y)`` (ignored outside a panel)."""
        for left, right, top, bottom in self._boxes:
            if left <= x <= right and top <= y <= bottom:
                x0, x1, y0, y1 = self.extent
                return self.place((x0 + (x - left) / (right - left) * (x1 - x0),
                                   y0 + (bottom - y) / (bottom - top) * (y1 - y0)))
        self.status.value = "click inside a landscape to place a point"

    def place(self, point) -> None:
        """Put the point at ``point`` (two numbers, data units), judge it, then (``radii``) compute its radii."""
        p = torch.as_tensor(point, dtype=torch.float32).flatten()
        if p.numel() != 2 or not torch.isfinite(p).all():
            raise ValueError(f"a point is two finite numbers (x, y), got {point!r}")
        self.x, self.radii, self.status.value = p.reshape(1, 2), {}, f"point ({p[0]:.2f}, {p[1]:.2f})"
        self.update()
        if self.radii_on_click:
            self.compute_radii()

    def _repaint(self) -> None:
        _blit(self.canvas, self.image.value, self._paint())

    def _paint(self) -> np.ndarray:
        im = Image.fromarray(self._bg)
        for i, (name, r) in enumerate(self.readout.items()):
            left, right, top, bottom = (int(round(v)) for v in self._boxes[i])
            cx, cy, sx, sy = self.to_pixel(i, self.x[0])
            cx, cy = cx - left, cy - top
            d = ImageDraw.Draw(panel := im.crop((left, top, right, bottom)))  # apart: circles stay in their panel
            for key, colour, dash in (("sound", (255, 255, 255), 360), ("attack", OOD_RGB, 12)):
                rr = self.radii.get(name, {}).get(key)
                for a in range(0, 360, 2 * dash) if rr is not None and 0 < rr < math.inf else ():  # attack: dotted
                    d.arc([cx - rr * sx, cy - rr * sy, cx + rr * sx, cy + rr * sy], a, a + dash, fill=colour, width=2)
            g = np.array([r["grad"][0] * sx, -r["grad"][1] * sy])
            tip = np.array([cx, cy]) + 28 * g / max(float(np.linalg.norm(g)), 1e-12)
            d.line([(cx, cy), tuple(tip)], fill=BLACK, width=2)
            d.ellipse([tip[0] - 3, tip[1] - 3, tip[0] + 3, tip[1] + 3], fill=BLACK)
            d.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=ID_RGB if r["ID"] else OOD_RGB, outline=BLACK)
            im.paste(panel, (left, top))
            for k, (text, fill, font) in enumerate(self._lines(name)):
                ImageDraw.Draw(im).text((i * self.panel_px + 30, self.panel_px + 4 + 14.5 * k), text, fill=fill,
                                        font=font)
        return np.asarray(im)
