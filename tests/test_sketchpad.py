"""The sketchpad explorer (gregnb.sketchpad): drawing -> input, the readout, radii, the toy point picker.

No browser here: the tests call the canvas callbacks (and the ipycanvas message handler a browser's events
arrive through) and read what the widgets would show. The browser test is tests/test_browser_sketchpad.py.
"""
from __future__ import annotations

import base64
import io
import math
import re
import statistics

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from PIL import Image

from gregnb.lipschitz import input_gradient_norm
from gregnb.models import MLP, SmallCNN
from gregnb.sketchpad import PointExplorer, Sketchpad, drawing_to_input
from gregnb.train import fit


@pytest.fixture(autouse=True)
def no_figure_left_open():
    """The explorers draw on matplotlib Figures pyplot does not know: nothing may be left open in pyplot."""
    before = set(plt.get_fignums())
    yield
    left = set(plt.get_fignums()) - before
    plt.close("all")
    assert not left, f"figures left open in pyplot: {sorted(left)}"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small nets, small batches: on a shared 2-core machine a second intra-op thread only adds waiting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cnns(digits):
    """Two small digits CNNs: one trained a little (its energies separate ID from OOD), one untrained."""
    torch.manual_seed(0)
    trained = SmallCNN(width=8)
    fit(trained, digits, "ce", epochs=2, lr=3e-3, batch_size=64, progress=False, seed=0)
    torch.manual_seed(1)
    return {"trained": trained.eval(), "untrained": SmallCNN(width=8).eval()}


@pytest.fixture(scope="module")
def pad(cnns, digits):
    return Sketchpad(cnns, digits, sound_method="ibp", attack_steps=5)


def _event(canvas, kind: str, x: float, y: float) -> None:
    """What a browser's mouse event becomes in the kernel: a custom message to the canvas model."""
    canvas._handle_frontend_event(None, {"event": kind, "x": x, "y": y}, [])


def _energies_by_hand(model, x) -> np.ndarray:
    """-logsumexp of the logits, written out (max-shifted), one per sample."""
    with torch.no_grad():
        z = model.eval()(x).double().numpy()
    m = z.max(axis=1)
    return -(m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


def _energy_by_hand(model, x) -> float:
    return float(_energies_by_hand(model, x)[0])


# ---------------------------------------------------------------- drawing -> input

def test_drawing_to_input_matches_a_hand_made_example():
    """The UCI rule: each of the 8x8 pixels is the number of inked cells in its 4x4 block, divided by 16."""
    ink = np.zeros((32, 32))
    ink[0:4, 0:4] = 1            # block (0, 0): 16 of 16 cells
    ink[0:2, 4:8] = 1            # block (0, 1): 8 of 16
    ink[31, 31] = 1              # block (7, 7): 1 of 16
    ink[12:16, 20:24] = 0.5      # block (3, 5): grey ink, mean 0.5
    ink[17, 9] = ink[18, 10] = 1  # block (4, 2): 2 of 16
    x = drawing_to_input(ink)
    assert x.shape == (1, 1, 8, 8) and x.dtype == torch.float32
    expected = np.zeros((8, 8))
    expected[0, 0], expected[0, 1], expected[7, 7], expected[3, 5], expected[4, 2] = 1, 0.5, 1 / 16, 0.5, 2 / 16
    np.testing.assert_array_equal(x[0, 0].numpy(), expected.astype(np.float32))
    # and the benchmark's own block averaging agrees (gregnb.data.digits draws at 32x32 the same way)
    from gregnb.data.digits import _downsample

    np.testing.assert_allclose(x[0, 0].numpy(), _downsample(ink.astype(np.float32)), atol=1e-7)


def test_drawing_to_input_rejects_what_is_not_a_drawing():
    for bad, what in [(np.zeros((8, 8)), "(32, 32)"), (np.full((32, 32), 2.0), "[0, 1]"),
                      (np.full((32, 32), np.nan), "[0, 1]"), (-np.ones((32, 32)), "[0, 1]")]:
        with pytest.raises(ValueError, match=re.escape(what)):
            drawing_to_input(bad)


def test_a_mouse_stroke_inks_the_cells_under_it(pad, digits):
    """A horizontal stroke with a 1-cell brush through the centres of row 10, columns 5..20, sent as browser
    events: exactly those 16 cells are inked; the input has 4/16 in blocks (2, 1..5) where 4 cells fall."""
    pad.controls["brush"].value = 1
    pad.buttons["clear"].click()
    c = pad.cell_px
    _event(pad.canvas, "mouse_down", 5.5 * c, 10.5 * c)
    for col in (8.5, 13.2, 20.5):
        _event(pad.canvas, "mouse_move", col * c, 10.5 * c)
    _event(pad.canvas, "mouse_up", 20.5 * c, 10.5 * c)
    assert pad.error is None, pad.error
    expected = np.zeros((32, 32))
    expected[10, 5:21] = 1
    np.testing.assert_array_equal(pad.ink, expected)
    row = pad.x[0, 0, 2].numpy()  # cells 5..20: 3 in block 1 (5, 6, 7), 4 in blocks 2..4, 1 in block 5 (20)
    np.testing.assert_array_equal(row, np.array([0, 3, 4, 4, 4, 1, 0, 0], np.float32) / 16)
    assert pad.x.sum() == pytest.approx(16 / 16)
    # a move without the button pressed draws nothing; nor does a second mouse-up
    _event(pad.canvas, "mouse_move", 2.5 * c, 2.5 * c)
    _event(pad.canvas, "mouse_up", 2.5 * c, 2.5 * c)
    np.testing.assert_array_equal(pad.ink, expected)


def test_brush_width_and_eraser(pad):
    pad.buttons["clear"].click()
    pad.controls["brush"].value = 3  # radius 1.5 cells: a dot covers the 3x3 cells around it and the 4 at distance 1
    c = pad.cell_px
    pad.pen_down(16.5 * c, 16.5 * c)
    pad.pen_up(16.5 * c, 16.5 * c)
    assert pad.ink.sum() == 9  # centres within 1.5: offsets with dx^2 + dy^2 <= 2.25: the 3x3 block only
    assert pad.ink[15:18, 15:18].all()
    pad.controls["mode"].value = "eraser"
    pad.controls["brush"].value = 1
    pad.pen_down(16.5 * c, 16.5 * c)
    pad.pen_up(16.5 * c, 16.5 * c)
    pad.controls["mode"].value = "pen"
    assert pad.ink.sum() == 8 and pad.ink[16, 16] == 0


def test_loaded_images_are_the_benchmark_images_exactly(pad, digits):
    pad.load("digit", index=7)
    torch.testing.assert_close(pad.x, digits.test_x[7:8], rtol=0, atol=0)
    pad.buttons["invert"].click()  # the benchmark's "inverted" OOD set is 1 - x
    torch.testing.assert_close(pad.x, 1 - digits.test_x[7:8], rtol=0, atol=1e-7)
    for part, pool in (("ood", torch.cat(list(digits.ood.values()))), ("pool", digits.aux_x)):
        for _ in range(3):
            pad.buttons["ood" if part == "ood" else "pool"].click()
            assert pad.error is None
            assert (pool - pad.x).flatten(1).abs().amax(1).min() < 1e-6, f"{part}: not an image of that set"
    pad.buttons["clear"].click()
    assert pad.x.abs().sum() == 0 and pad.source == "blank"
    pad.buttons["digit"].click()
    assert (digits.test_x - pad.x).flatten(1).abs().amax(1).min() < 1e-6


# ---------------------------------------------------------------- the readout

def test_readout_agrees_with_independent_computations(pad, cnns, digits):
    pad.load("ood", index=3)
    for name, m in cnns.items():
        r = pad.readout[name]
        e_test = torch.from_numpy(_energies_by_hand(m, digits.test_x))
        g = pad.thresholds[name]
        # γ accepts at least 95% of the ID test energies, and is the smallest energy that does
        assert (e_test <= g + 1e-6).double().mean() >= 0.95
        assert (e_test < g - 1e-6).double().mean() < 0.95
        assert r["E"] == pytest.approx(_energy_by_hand(m, pad.x), abs=1e-5)
        assert r["ID"] == (r["E"] <= g) and pad.metrics[f"{name}: ID"] == r["ID"]
        with torch.no_grad():
            probs = torch.softmax(m(pad.x).double(), 1)[0]
        assert r["class"] == int(probs.argmax()) and r["p"] == pytest.approx(float(probs.max()))
        assert r["grad_norm"] == pytest.approx(float(input_gradient_norm(m, pad.x)[0]), rel=1e-4)
        # the gradient map points where E grows: a small step along it raises E by about |grad|^2 * step
        step = 1e-3
        x_up = pad.x + step * torch.from_numpy(r["grad"]).float().unsqueeze(0) / r["grad_norm"]
        assert _energy_by_hand(m, x_up) - r["E"] == pytest.approx(step * r["grad_norm"], rel=0.05)


def test_stroke_callbacks_update_the_readout(pad):
    pad.buttons["clear"].click()
    before_e = pad.metrics["trained: E"]
    before_png, before_html, n = pad.image.value, pad.stats.value, len(pad.timings_ms)
    c = pad.cell_px
    _event(pad.canvas, "mouse_down", 12 * c, 4 * c)
    for k in range(1, 9):
        _event(pad.canvas, "mouse_move", 12 * c, (4 + 3 * k) * c)
        assert len(pad.timings_ms) == n  # no model runs while the stroke goes on
    _event(pad.canvas, "mouse_up", 12 * c, 28 * c)
    assert len(pad.timings_ms) == n + 1 and pad.error is None
    assert pad.metrics["trained: E"] != before_e
    assert f"E = {pad.metrics['trained: E']:.2f}" in pad.stats.value and pad.stats.value != before_html
    assert pad.image.value != before_png and pad.image.value[:4] == b"\x89PNG"
    assert pad.readout["trained"]["grad"].shape == (1, 8, 8)


def test_radii_come_on_demand_and_bracket_the_true_radius(pad):
    pad.load("digit", index=0)
    assert pad.radii == {} and pad.metrics["trained: attack"] is None  # a stroke computes no radius
    pad.buttons["radii"].click()
    assert pad.error is None, pad.error
    for name, r in pad.radii.items():
        assert r["sound"] is not None, r["note"]
        assert 0 <= r["sound"] <= pad.eps_max
        assert r["sound"] <= r["attack"], f"{name}: a certificate ({r['sound']}) beyond a found attack ({r['attack']})"
        assert pad.metrics[f"{name}: sound"] == r["sound"]
    assert "sound r ≥" in pad.stats.value and "attack" in pad.stats.value
    c = pad.cell_px
    pad.pen_down(2 * c, 2 * c)
    pad.pen_up(6 * c, 6 * c)
    assert pad.radii == {}, "radii of an earlier drawing must not be shown for a new one"


def test_without_gregnb_certify_the_attack_radius_is_shown_alone(pad, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gregnb.certify", None)  # `import gregnb.certify` now fails
    pad.load("digit", index=1)
    pad.compute_radii()
    for r in pad.radii.values():
        assert r["sound"] is None and "unavailable" in r["note"] and r["attack"] > 0
    assert "sound r: gregnb.certify" in pad.stats.value


def test_callback_errors_are_shown_under_the_widget(pad, monkeypatch):
    def broken():
        raise RuntimeError("model on fire")

    monkeypatch.setattr(pad, "update", broken)
    c = pad.cell_px
    _event(pad.canvas, "mouse_down", 3 * c, 3 * c)
    _event(pad.canvas, "mouse_up", 9 * c, 3 * c)  # raises inside the callback: caught, shown
    assert pad.error == "RuntimeError: model on fire"
    assert "model on fire" in pad.output.outputs[0]["text"]
    monkeypatch.undo()
    pad.buttons["clear"].click()
    assert pad.error is None and not pad.output.outputs


def test_bad_arguments_get_clear_errors(cnns, digits, blobs):
    with pytest.raises(ValueError, match="non-empty dict"):
        Sketchpad({}, digits)
    with pytest.raises(ValueError, match="name \\(str\\)"):
        Sketchpad({"a": "not a model"}, digits)
    with pytest.raises(ValueError, match="8x8 digits"):
        Sketchpad(cnns, blobs)
    with pytest.raises(ValueError, match="eps_max"):
        Sketchpad(cnns, digits, eps_max=0)
    with pytest.raises(ValueError, match="start"):
        Sketchpad(cnns, digits, start="a cat")
    pad = Sketchpad({"t": cnns["trained"]}, digits, start="blank")
    with pytest.raises(ValueError, match="part must be one of"):
        pad.load("letters")
    with pytest.raises(ValueError, match="index must be"):
        pad.load("digit", index=10_000)
    with pytest.raises(ValueError, match="\\(32, 32\\)"):
        pad.set_ink(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="2-D benchmark"):
        PointExplorer({"m": MLP(2, 3)}, digits)


def test_static_pages_get_a_png_of_the_default_state(cnns, digits):
    import nbformat

    from gregnb.site import WIDGET_MIME, _strip_widget_views

    pad = Sketchpad(cnns, digits)  # default state: test digit 0, no radii
    bundle = pad._repr_mimebundle_()
    png = base64.b64decode(bundle["image/png"])
    assert png == pad.image.value
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape == (Sketchpad.HEAD + Sketchpad.ROW * len(cnns), Sketchpad.RW, 3)
    # the picture shows the drawing: its top-left corner is the 32x32 drawing at 2 px per cell
    drawn = img[6:70, 10:74, 0].reshape(32, 2, 32, 2).mean(axis=(1, 3)) / 255
    np.testing.assert_allclose(drawn, pad.ink, atol=1 / 255 + 1e-9)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        "display_data", data={WIDGET_MIME: {"model_id": "x"}, "image/png": bundle["image/png"]})])])
    _strip_widget_views(nb)
    assert list(nb.cells[0].outputs[0]["data"]) == ["image/png"]


def test_a_stroke_readout_stays_fast(cnns, digits):
    """A loose guard only (the target, 150 ms median with three models, is measured in benchmarks/notebooks.py)."""
    pad = Sketchpad({**cnns, "third": SmallCNN(width=8)}, digits, start="blank")
    pad.timings_ms.clear()
    c = pad.cell_px
    for k in range(6):
        pad.pen_down(4 * c, (4 + 4 * k) * c)
        pad.pen_move(16 * c, (4 + 4 * k) * c)
        pad.pen_up(28 * c, (4 + 4 * k) * c)
    assert len(pad.timings_ms) == 6 and statistics.median(pad.timings_ms) < 1000


# ---------------------------------------------------------------- the 2-D toy

@pytest.fixture(scope="module")
def toy_models(blobs):
    torch.manual_seed(0)
    trained = MLP(2, blobs.n_classes)
    fit(trained, blobs, "ce", epochs=5, lr=5e-3, progress=False, seed=0)
    torch.manual_seed(1)
    return {"trained": trained.eval(), "untrained": MLP(2, blobs.n_classes).eval()}


def test_point_explorer_click_places_the_point_and_draws_the_radii(toy_models, blobs):
    ex = PointExplorer(toy_models, blobs, resolution=30, n_points=50, start=(0.0, 0.0))
    assert ex.error is None and len(ex.timings_ms) == 1 and ex.radii  # radii follow the first point
    target = (1.5, -2.0)
    px, py, sx, sy = ex.to_pixel(1, target)  # the second panel: a click there places the same point
    assert sx == pytest.approx(sy, rel=0.02)  # square panels: circles are circles
    before = ex.image.value
    _event(ex.canvas, "mouse_down", px, py)
    assert ex.error is None, ex.error
    np.testing.assert_allclose(ex.x[0].numpy(), target, atol=1e-5)
    assert ex.image.value != before
    for name, m in toy_models.items():
        r, rad = ex.readout[name], ex.radii[name]
        assert r["E"] == pytest.approx(_energy_by_hand(m, ex.x), abs=1e-5)
        assert r["ID"] == (r["E"] <= ex.thresholds[name])
        assert r["grad_norm"] == pytest.approx(float(input_gradient_norm(m, ex.x)[0]), rel=1e-4)
        assert rad["sound"] is not None, rad["note"]
        assert rad["sound"] <= rad["attack"] + 1e-9, (name, rad)
    # the circles are drawn: at the sound radius around the point, the pixels are white (sound circle) or red
    # (the dotted attack circle, drawn over it when the two radii are close); at half that radius they are not
    img = np.asarray(Image.open(io.BytesIO(ex.image.value)).convert("RGB")).astype(int)
    cx, cy, sx, _ = ex.to_pixel(0, target)
    r0 = ex.radii["trained"]["sound"] * sx
    assert 8 < r0 < 100, "pick a test point whose circle is visible"

    def circle_pixels(radius: float) -> int:
        ring = [img[int(round(cy + radius * math.sin(a))), int(round(cx + radius * math.cos(a)))]
                for a in np.linspace(0.1, 2 * math.pi + 0.1, 24, endpoint=False)]
        return sum(bool((p >= 235).all() or (abs(p - np.array([214, 39, 40])) < 30).all()) for p in ring)

    assert circle_pixels(r0) >= 18 and circle_pixels(r0 / 2) <= 6, (circle_pixels(r0), circle_pixels(r0 / 2))


def test_point_explorer_ignores_clicks_outside_the_panels(toy_models, blobs):
    ex = PointExplorer(toy_models, blobs, resolution=20, n_points=20, radii=False)
    point = ex.x.clone()
    _event(ex.canvas, "mouse_down", 2, ex.panel_px + 40)  # in the text under the panels
    torch.testing.assert_close(ex.x, point)
    assert "inside a landscape" in ex.status.value and ex.radii == {}
    with pytest.raises(ValueError, match="two finite numbers"):
        ex.place((1.0, float("nan")))
