"""Draw an input, see how every detector judges it: :class:`Sketchpad` (digits), :class:`PointExplorer` (2-D toy).

Energy ``E(x) = -logsumexp(logits)``, LOW = ID; each model's ``γ`` accepts 95% (``tpr``) of its ID test energies
(``E <= γ`` → ID); gradients are ``∂E/∂x`` (score units per input unit); radii are ℓ2 in input units (8x8 pixels
in [0, 1], or the plane). Pictures are painted with NumPy/Pillow on a matplotlib ``Figure`` (never pyplot) rendered
once, so an update costs one forward+backward pass per model and a small PNG.
"""
from __future__ import annotations

import base64
import io
import math
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping

import ipywidgets as W
import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from .data.base import Benchmark
from .inference import as_model_input, eval_mode, predict_logits
from .lipschitz import attack_radius
from .metrics import threshold_at_tpr
from .scores import energy
from .viz import make_grid, score_landscape

__all__ = ["drawing_to_input", "Sketchpad", "PointExplorer", "INK_SIZE"]

INK_SIZE, BLOCK = 32, 4  # drawn at 32x32, averaged over 4x4 blocks: 8x8 (as gregnb.data.digits does)
ID_RGB, OOD_RGB, GREY, BLACK, GREEN = (44, 160, 44), (214, 39, 40), (120, 120, 120), (0, 0, 0), (0, 110, 0)
_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
_FONT, _BOLD = (ImageFont.truetype(str(_FONTS / f), 12) for f in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"))
_CENTRES = np.mgrid[0:INK_SIZE, 0:INK_SIZE] + 0.5  # (row, col) of each cell's centre, in cells


def drawing_to_input(ink) -> torch.Tensor:
    """A ``(32, 32)`` drawing in [0, 1] (1 = ink: bright strokes on dark) as the model input: the mean of each
    4x4 block, ``(1, 1, 8, 8)`` float32 in [0, 1], as the digits benchmark makes its images (the UCI digits
    count the set pixels in each 4x4 block of a 32x32 bitmap; the benchmark divides the count by 16)."""
    ink = np.asarray(ink, dtype=np.float64)
    if ink.shape != (INK_SIZE, INK_SIZE):
        raise ValueError(f"a drawing is a ({INK_SIZE}, {INK_SIZE}) array, got shape {ink.shape}")
    if not np.isfinite(ink).all() or ink.min() < 0 or ink.max() > 1:
        raise ValueError("a drawing holds values in [0, 1] (0 = background, 1 = ink)")
    n = INK_SIZE // BLOCK
    return torch.from_numpy(ink.reshape(n, BLOCK, n, BLOCK).mean(axis=(1, 3)).astype(np.float32)).reshape(1, 1, n, n)


def _segment_cells(p0, p1, radius: float) -> np.ndarray:
    """``(32, 32)`` bool: the cells whose centre lies within ``radius`` of the segment p0-p1 ((col, row), in cells)."""
    (x0, y0), (x1, y1), (cy, cx) = p0, p1, _CENTRES
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((cx - x0) * dx + (cy - y0) * dy) / (dx * dx + dy * dy), 0, 1) if dx or dy else 0.0
    return (cx - x0 - t * dx) ** 2 + (cy - y0 - t * dy) ** 2 <= radius ** 2


def _judge(model: nn.Module, x: torch.Tensor, gamma: float) -> dict:
    """One forward+backward pass on one sample ``x``: class, its softmax probability, E, the decision (E <= γ),
    ``∂E/∂x`` (the sample's shape; score units per input unit) and its ℓ2 norm."""
    with eval_mode(model), torch.enable_grad():
        xx = as_model_input(x, model).to(next(model.parameters()).device).detach().requires_grad_(True)
        logits = model(xx)
        (g,) = torch.autograd.grad(energy(logits).sum(), xx)
    logits = logits.detach().double().cpu()
    e, p = float(-torch.logsumexp(logits, 1)), torch.softmax(logits, 1)[0]
    return {"class": int(p.argmax()), "p": float(p.max()), "E": e, "gamma": gamma, "ID": e <= gamma,
            "grad": g[0].double().cpu().numpy(), "grad_norm": float(g.double().norm())}


@contextmanager
def _one_thread():
    """Torch on one thread: one sample through a small net has nothing to split, and on a busy CPU intra-op
    threads only add hand-offs (measured: 3 digits CNNs, 26 ms on one thread, 80-350 ms on two)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _png(rgb: np.ndarray) -> bytes:
    Image.fromarray(np.ascontiguousarray(rgb[..., :3])).save(buf := io.BytesIO(), "PNG", compress_level=1)
    return buf.getvalue()


def _rgba(rgb: np.ndarray) -> np.ndarray:  # ipycanvas sends RGBA as PNG (RGB would go as lossy JPEG)
    return np.concatenate([rgb[..., :3], np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)


def _blit(canvas, png: bytes, rgb: np.ndarray) -> None:
    """Show the picture ``rgb`` (already encoded as ``png``) on an ipycanvas Canvas. ``put_image_data`` would encode
    it again at zlib level 6 (130 ms for the toy's picture): ipycanvas's own command takes the bytes as they are."""
    try:
        from ipycanvas.canvas import COMMANDS

        canvas._canvas_manager.send_draw_command(canvas, COMMANDS["putImageData"], [0, 0], [png])
    except (ImportError, AttributeError, KeyError):  # another ipycanvas version: the public, slower way
        canvas.put_image_data(_rgba(rgb), 0, 0)


def _render_once(width: int, height: int, draw):
    """``draw(fig)`` on a ``width`` x ``height`` px matplotlib Figure (not pyplot's), rendered to RGB; and a
    function giving an axes' (left, right, top, bottom) in image pixels (rows grow downwards)."""
    draw(fig := Figure(figsize=(width / 72, height / 72), dpi=72, facecolor="white"))
    FigureCanvasAgg(fig).draw()
    return (np.asarray(fig.canvas.buffer_rgba())[..., :3].copy(),
            lambda ax: (ax.bbox.x0, ax.bbox.x1, height - ax.bbox.y1, height - ax.bbox.y0))


class _CanvasExplorer(W.VBox):
    """What both explorers share: models and thresholds, readout, radii, errors, the static PNG."""

    def __init__(self, models: Mapping[str, nn.Module], x_id: torch.Tensor, tpr: float, eps_max: float, sound_method,
                 attack_steps: int):
        if not isinstance(models, Mapping) or not models or not all(
                isinstance(k, str) and isinstance(m, nn.Module) for k, m in models.items()):
            raise ValueError("models must be a non-empty dict: name (str) -> trained model, e.g. {'CE': model}")
        if not (isinstance(eps_max, (int, float)) and 0 < eps_max < math.inf):
            raise ValueError(f"eps_max must be a positive finite number (ℓ2, input units), got {eps_max!r}")
        self.models, self.tpr, self.eps_max = dict(models), tpr, float(eps_max)
        self.sound_method, self.attack_steps = sound_method, int(attack_steps)
        self.readout, self.radii, self.metrics = {}, {}, {}
        self.id_energies = {name: energy(predict_logits(m, x_id)).double().numpy() for name, m in self.models.items()}
        self.thresholds = {name: -threshold_at_tpr(-e, tpr) for name, e in self.id_energies.items()}  # E <= γ: ID
        self.error: str | None = None
        self.timings_ms, self.radius_ms = [], []  # per readout update (model passes, paint, PNG); per radii
        self.image, self.stats, self.status, self.output = W.Image(format="png"), W.HTML(), W.HTML(), W.Output()

    def _make_canvas(self, width: int, height: int, buttons: dict) -> None:
        from ipycanvas import Canvas  # a dependency of gregnb

        size = dict(width=f"{width}px", min_width=f"{width}px", height=f"{height}px", align_self="flex-start")
        self.canvas = Canvas(width=width, height=height, layout=W.Layout(**size))  # unstretched: square cells
        self.canvas.on_client_ready(lambda: self._guard(self._repaint))  # a reloaded page gets the picture again
        self.buttons = {key: W.Button(description=label, tooltip=tip, layout=W.Layout(width="auto"))
                        for key, (label, _, tip) in buttons.items()}
        for key, (_, action, _) in buttons.items():
            self.buttons[key].on_click(lambda _b, action=action: self._guard(action))

    def _guard(self, fn, *args) -> None:
        """Run a widget callback; an error is shown under the widget (and kept in ``error``), not swallowed."""
        try:
            fn(*args)
            self.error, self.output.outputs = None, ()
        except Exception as err:
            self.error, self.output.outputs = f"{type(err).__name__}: {err}", ()
            self.output.append_stdout(self.error + "\n" + traceback.format_exc())

    def update(self) -> None:
        """Judge the current input with every model and repaint the readout (timed in ``timings_ms``)."""
        t0, x = time.perf_counter(), self.x
        with _one_thread():
            self.readout = {name: _judge(m, x, self.thresholds[name]) for name, m in self.models.items()}
        self._refresh()
        self.timings_ms.append(1000 * (time.perf_counter() - t0))

    def compute_radii(self) -> None:
        """Attack radius (upper bound) and sound radius (:mod:`gregnb.certify`: lower bound) of each model's decision
        on the current input, searched up to ``eps_max`` (attack ``inf``: no flip found within it). Without
        :mod:`gregnb.certify`, or where it fails on a model, only the attack radius is shown, with a note."""
        t0, x, sound, note = time.perf_counter(), self.x, None, "not requested"
        self.status.value = "<i>computing radii…</i>"
        if self.sound_method is not None:
            try:
                from .certify import sound_radius as sound
            except Exception as err:  # optional here: the attack radius is still shown
                note = f"gregnb.certify unavailable ({type(err).__name__})"
        for name, m in self.models.items():
            g, r = self.thresholds[name], {"sound": None, "note": note}
            with _one_thread():
                r["attack"] = float(attack_radius(m, x, g, eps_max=self.eps_max, steps=self.attack_steps,
                                                  n_bisect=6)[0])
                try:
                    if sound is not None:
                        r["sound"] = float(sound(m, x, g, method=self.sound_method, eps_max=self.eps_max)[0])
                except Exception as err:  # e.g. a layer the certifier does not support: say so, keep the rest
                    r["note"] = f"{type(err).__name__}: {err}"
            self.radii[name] = r
        self.radius_ms.append(1000 * (time.perf_counter() - t0))
        self.status.value = f"radii computed in {self.radius_ms[-1] / 1000:.1f} s (searched up to {self.eps_max:g})"
        self._refresh()

    def _lines(self, name: str) -> list[tuple[str, tuple, ImageFont.FreeTypeFont]]:
        """One model's readout as (text, colour, font) lines."""
        r, rad = self.readout[name], self.radii.get(name)
        decision = ("→ ID  (E ≤ γ)", ID_RGB) if r["ID"] else ("→ OOD  (E > γ)", OOD_RGB)
        out = [(f"class {r['class']}  (p = {r['p']:.2f})", BLACK, _FONT), (f"E = {r['E']:.2f}   γ = {r['gamma']:.2f}",
               BLACK, _FONT), (*decision, _BOLD), (f"‖∇ₓE‖ = {r['grad_norm']:.3g}", BLACK, _FONT)]
        if rad is None:
            return out + [("radii: press 'radii'", GREY, _FONT)]
        s, a = rad["sound"], rad["attack"]
        return out + [(f"sound r ≥ {s:.3g}" if s is not None else f"sound r: {rad['note'][:26]}", GREEN, _FONT),
                      (f"attack r ≤ {a:.3g}" if a < math.inf else f"attack: no flip ≤ {self.eps_max:g}", OOD_RGB,
                       _FONT)]

    def _refresh(self) -> None:
        """``metrics``, the text readout and the picture, from ``readout`` and ``radii``."""
        self.metrics = {f"{name}: {k}": v for name, r in self.readout.items() for k, v in (
            ("class", r["class"]), ("p", r["p"]), ("E", r["E"]), ("γ", r["gamma"]), ("ID", r["ID"]),
            ("‖∇E‖", r["grad_norm"]), *((k, self.radii.get(name, {}).get(k)) for k in ("sound", "attack")))}
        self.stats.value = "<div class='gregnb-readout'>" + "<br>".join(f"<b>{name}</b>: " + " &nbsp;·&nbsp; ".join(
            t for t, _, _ in self._lines(name)) for name in self.readout) + "</div>"
        picture = self._paint()
        self.image.value = _png(picture)
        if self.canvas_shows_readout:
            _blit(self.canvas, self.image.value, picture)

    def _repr_mimebundle_(self, **kwargs):
        """The live widget, plus the current readout (drawing or point included) as a PNG for static pages."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")  # gregnb.site keeps this one
        return bundle


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
