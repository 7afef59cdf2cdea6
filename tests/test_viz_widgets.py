import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt

from gregnb.metrics import auroc, fpr_at_tpr
from gregnb.models import MLP
from gregnb.scores import energy, msp
from gregnb.train import fit
from gregnb.viz import grid_values, make_grid, roc_plot, score_histograms, score_landscape, tile_images
from gregnb.widgets import dataset_browser, temperature_explorer


@pytest.fixture(autouse=True)
def no_figure_left_open():
    """Every test here closes what it opened; an explorer opens nothing in pyplot (a figure left open is
    drawn again by Jupyter's inline backend under the next cell that plots)."""
    before = set(plt.get_fignums())
    yield
    left = set(plt.get_fignums()) - before
    plt.close("all")
    assert not left, f"figures left open in pyplot: {sorted(left)}"


def test_explorers_draw_on_figures_pyplot_does_not_know(blobs, toy_model, digits):
    from matplotlib.figure import Figure

    from gregnb.widgets import taylor_explorer

    before = plt.get_fignums()
    explorers = [taylor_explorer(), dataset_browser(digits, ncols=4, nrows=2),
                 temperature_explorer(toy_model, blobs.test_x, blobs.ood["near"], resolution=20)]
    for ex in explorers:
        first = ex.image.value
        control = next(iter(ex.controls.values()))
        control.value = control.options[-1] if hasattr(control, "options") else control.max
        assert ex.image.value != first and ex.error is None
        assert isinstance(ex.fig, Figure) and ex.fig.canvas.manager is None  # not one of pyplot's
        assert ex.fig not in [plt.figure(n) for n in plt.get_fignums()]
    assert plt.get_fignums() == before


def test_make_grid_layout():
    g = make_grid((-1, 1, 0, 2), n=3)
    assert g.shape == (9, 2)
    # row-major from ymin: the first row has y = 0 and x running -1, 0, 1
    torch.testing.assert_close(g[:3], torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))
    v = grid_values(lambda p: p[:, 0] + 10 * p[:, 1], (-1, 1, 0, 2), n=3)
    assert v.shape == (3, 3) and v[2, 0] == pytest.approx(19.0)  # top-left: x=-1, y=2


def test_histogram_threshold_line_sits_at_95_tpr():
    rng = np.random.default_rng(0)
    id_e, ood_e = rng.normal(-5, 1, 200), rng.normal(-2, 1, 200)  # raw energies, LOW = ID
    ax = score_histograms(id_e, {"ood": ood_e}, low_is_id=True)
    x_line = ax.lines[0].get_xdata()[0]
    assert x_line == pytest.approx(np.sort(id_e)[189])  # 190 of 200 energies are <= the line
    assert f"{100 * fpr_at_tpr(-id_e, -ood_e):.1f}%" in ax.get_legend().get_texts()[1].get_text()
    plt.close(ax.figure)


def test_roc_plot_and_landscape_draw():
    rng = np.random.default_rng(1)
    ax = roc_plot(rng.normal(1, 1, 100), {"a": rng.normal(0, 1, 80)})
    assert "AUROC" in ax.get_legend().get_texts()[0].get_text()
    plt.close(ax.figure)
    vals = grid_values(lambda p: -(p ** 2).sum(1), n=50)
    ax = score_landscape(vals, points={"ID": torch.zeros(3, 2)}, threshold=-4.0)
    assert len(ax.collections) >= 2  # contour + scatter
    plt.close(ax.figure)


@pytest.fixture(scope="module")
def toy_model(blobs):
    m = MLP(n_classes=3)
    fit(m, blobs, epochs=5, lr=5e-3, progress=False)
    return m


def test_temperature_explorer_updates(blobs, toy_model):
    ex = temperature_explorer(toy_model, blobs.test_x, blobs.ood["near"], ood_name="near", resolution=40)
    first = ex.image.value
    assert first[:4] == b"\x89PNG"
    with torch.no_grad():
        z_id, z_ood = toy_model(blobs.test_x), toy_model(blobs.ood["near"])
    for T in (0.1, 10.0):
        ex.controls["T"].value = T
        assert not ex.output.outputs, ex.output.outputs
        s_id, s_ood = -energy(z_id, T), -energy(z_ood, T)
        assert ex.metrics["FPR95"] == pytest.approx(fpr_at_tpr(s_id, s_ood), abs=1e-6)
        assert ex.metrics["AUROC"] == pytest.approx(auroc(s_id, s_ood), abs=1e-6)
    assert ex.image.value != first
    ex.controls["score"].value = "msp"
    assert ex.metrics["FPR95"] == pytest.approx(fpr_at_tpr(msp(z_id, 10.0), msp(z_ood, 10.0)), abs=1e-6)
    assert len(ex.timings_ms) == 4


def test_temperature_explorer_histogram_only_for_images(digits):
    from gregnb.models import SmallCNN

    ex = temperature_explorer(SmallCNN(width=8), digits.test_x[:50], digits.ood["noise"][:50], extent=None)
    assert len(ex.fig.axes) == 1
    before = ex.image.value
    ex.controls["T"].value = 100.0
    assert ex.image.value != before


def test_explorer_shows_errors_instead_of_raising(blobs, toy_model):
    ex = temperature_explorer(toy_model, blobs.test_x, blobs.ood["far"], resolution=20)
    ex._draw = lambda fig, **kw: 1 / 0
    ex.controls["T"].value = 2.0  # must not raise
    text = "".join(o.get("text", "") for o in ex.output.outputs)
    assert "ZeroDivisionError" in text and "ZeroDivisionError" in ex.error
    ex._draw = lambda fig, **kw: {"ok": 1.0}
    ex.controls["T"].value = 3.0  # a good redraw clears the error
    assert ex.error is None and not ex.output.outputs


def test_tile_images_places_each_image():
    x = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 1, 2, 2) / 20
    m = tile_images(x, ncols=3, pad=1)
    assert m.shape == (2 * 3 - 1, 3 * 3 - 1)
    np.testing.assert_allclose(m[0:2, 3:5], x[1, 0].numpy())  # image 1: row 0, column 1
    np.testing.assert_allclose(m[3:5, 3:5], x[4, 0].numpy())  # image 4: row 1, column 1
    assert m[3, 6] == 1.0  # the empty sixth cell is white
    with pytest.raises(ValueError, match="shape"):
        tile_images(torch.zeros(3, 3))


def test_dataset_browser_pages_and_parts(digits):
    ex = dataset_browser(digits, ncols=4, nrows=2)
    assert ex.metrics["size"] == len(digits.train_x)
    first = ex.image.value
    ex.controls["page"].value = 2
    assert ex.image.value != first
    ex.controls["part"].value = "OOD: noise"
    assert ex.metrics["size"] == len(digits.ood["noise"])
    assert ex.metrics["mean pixel"] == pytest.approx(digits.ood["noise"].mean().item())
    assert ex.error is None


def test_taylor_explorer_crossing_matches_hand_computation():
    from gregnb.widgets import taylor_explorer

    ex = taylor_explorer(score_level=-6.0, threshold=-4.0, slopes=(0.4, 2.5))
    ex.controls["delta"].value = 1.0
    # S(d) = -6 + slope * d + 0.15 d^2: flat -> -5.45 (still ID), steep -> -3.35 (crossed)
    assert ex.metrics["E(flat+δ)"] == pytest.approx(-5.45)
    assert ex.metrics["E(steep+δ)"] == pytest.approx(-3.35)
    assert ex.metrics["flat still ID"] and not ex.metrics["steep still ID"]
    with pytest.raises(ValueError, match="below the threshold"):
        taylor_explorer(score_level=0.0, threshold=-1.0)


@pytest.mark.slow
def test_lambda_explorer_switches_models(blobs):
    from gregnb.lipschitz import input_gradient_norm
    from gregnb.widgets import lambda_explorer

    models = {}
    for lam in (0.0, 2.0):
        torch.manual_seed(0)
        m = MLP(n_classes=3)
        fit(m, blobs, "greg", epochs=2, progress=False, m_in=-7.0, m_out=-2.0, lambda_grad=lam, log_grad_norms=False)
        models[lam] = m
    ex = lambda_explorer(models, blobs, resolution=20)
    first = ex.image.value
    ex.controls["lam"].value = 2.0
    assert ex.image.value != first and ex.error is None
    assert ex.metrics["mean ‖∇E‖ on ID"] == pytest.approx(input_gradient_norm(models[2.0], blobs.test_x).mean().item())
    s_id = -energy(models[2.0](blobs.test_x)).detach()
    s_ood = -energy(models[2.0](blobs.ood["near"])).detach()
    assert ex.metrics["FPR95 near"] == pytest.approx(fpr_at_tpr(s_id, s_ood))


def test_margin_explorer_metrics_and_retrain(blobs, toy_model):
    from gregnb.widgets import margin_explorer

    ex = margin_explorer(toy_model, blobs, -6.0, -3.0, retrain_epochs=2, max_samples=300)
    e_id, e_aux = ex.state["e_id"], ex.state["e_aux"]
    assert ex.metrics["ID past m_in"] == pytest.approx((e_id <= -6.0).double().mean().item())
    ex.controls["m_out"].value = -2.0
    assert ex.metrics["aux past m_out"] == pytest.approx((e_aux >= -2.0).double().mean().item())
    before = ex.state["model"]
    ex.buttons["retrain with these margins"].click()
    assert ex.error is None and ex.state["model"] is not before
    # a meaningless pair is refused with a clear message, shown rather than raised
    ex.controls["m_in"].value = ex.controls["m_out"].value + 0.5
    ex.buttons["retrain with these margins"].click()
    assert "must be below" in ex.error


def test_sandwich_plot_without_axes_draws_on_a_pyplot_figure_for_the_cell():
    from gregnb.viz import sandwich_plot

    ax = sandwich_plot({"crown": [0.3, 0.0, 0.1], "attack": [0.5, np.inf, 0.2]}, floor=1e-3, scale=0.4)
    assert plt.fignum_exists(ax.figure.number)  # the inline backend shows it under the cell, then closes it
    crown, attack = ax.collections
    np.testing.assert_allclose(crown.get_offsets()[:, 1], [1e-3, 0.1, 0.3])  # sorted by crown; 0 drawn at floor
    assert len(attack.get_offsets()) == 2  # the attack that never succeeded (inf) is left out
    plt.close(ax.figure)


def test_taylor_explorer_shows_the_true_crossing_inside_the_first_order_band():
    import numpy as np

    from gregnb.widgets import taylor_explorer

    ex = taylor_explorer(score_level=-6.0, threshold=-4.0, slopes=(0.4, 2.5))
    d = np.linspace(-6, 6, 600_001)
    for key, slope in (("flat", 0.4), ("steep", 2.5)):
        crossing = np.abs(d[-6.0 + slope * d + 0.15 * d ** 2 >= -4.0]).min()  # brute force on a fine grid
        assert abs(ex.metrics[f"{key} true radius"] - crossing) < 1e-4
        assert ex.metrics[f"{key} true radius"] < ex.metrics[f"{key} first-order radius"]
