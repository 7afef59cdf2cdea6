"""The canvas explorer both sketchpads build on: drawing, painting and timing helpers."""
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
from PIL import Image, ImageFont
from torch import nn

from ..inference import as_model_input, eval_mode, predict_logits
from ..lipschitz import attack_radius
from ..metrics import threshold_at_tpr
from ..scores import energy

__all__ = ["drawing_to_input", "INK_SIZE"]

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
                from ..certify import sound_radius as sound
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
