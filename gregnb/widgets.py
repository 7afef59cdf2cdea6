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
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

import copy

from .evaluate import evaluate, predict_logits
from .losses import energy_margin_loss
from .metrics import auroc, fpr_at_tpr, threshold_at_tpr
from .scores import energy, msp
from .data.base import Benchmark
from .viz import fig_to_png, make_grid, score_histograms, score_landscape, show_images, threshold_contour

__all__ = ["FigureExplorer", "temperature_explorer", "dataset_browser", "margin_explorer", "taylor_explorer",
           "lambda_explorer", "sampling_explorer", "radius_explorer", "Sketchpad", "PointExplorer"]


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


def taylor_explorer(score_level: float = -6.0, threshold: float = -4.0, slopes: tuple[float, float] = (0.4, 2.5)
                    ) -> FigureExplorer:
    """The paper's Fig. 1 (left) as a 1-D picture: two ID points with the same energy but different
    slopes; a perturbation delta moves both. The steep one crosses the threshold first.

    Each point's energy along the line is ``S(x0 + d) = score_level + slope * d + 0.15 * d^2`` (a little
    curvature, so the tangent is only first-order). Controls: ``delta``. ``metrics``: both energies
    at the perturbed points, whether each is still accepted as ID, and each first-order certified
    radius ``(threshold - score_level) / |slope|`` (E8 with L = |slope|).
    """
    if not score_level < threshold:
        raise ValueError(f"score_level ({score_level}) must be below the threshold ({threshold}): both points start as ID")
    d = np.linspace(-3, 3, 301)
    curv = 0.15
    names = ("flat point (small ‖∇E‖)", "steep point (large ‖∇E‖)")

    def draw(fig, delta: float) -> dict:
        if not fig.axes:
            fig.subplots(1, 2, sharey=True)
            fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.88, wspace=0.08)
        out = {"delta": float(delta)}
        for ax, slope, name, color in zip(fig.axes, slopes, names, ("C2", "C3")):
            ax.cla()
            ax.plot(d, score_level + slope * d + curv * d ** 2, color=color, lw=2, label="energy along the line")
            ax.plot(d, score_level + slope * d, color=color, ls=":", lw=1, label="tangent (Taylor, E5)")
            ax.axhline(threshold, color="k", ls="--", lw=1)
            ax.axhspan(threshold, threshold + 20, color="C3", alpha=0.07)
            ax.text(-2.9, threshold + 0.2, "OOD side (E > γ)", fontsize=8)
            e_new = score_level + slope * delta + curv * delta ** 2
            ax.plot([0], [score_level], "o", color="k")
            ax.plot([delta], [e_new], "o", color="C3" if e_new > threshold else "C2", ms=9)
            radius = (threshold - score_level) / abs(slope)
            ax.axvspan(-radius, radius, color=color, alpha=0.12, label=f"first-order radius {radius:.2f}")
            ax.set_ylim(score_level - 4, threshold + 4)
            ax.set_xlabel("perturbation d")
            ax.set_title(name, fontsize=9)
            ax.legend(fontsize=7, loc="lower right")
            key = "flat" if slope == slopes[0] else "steep"
            out[f"E({key}+δ)"] = float(e_new)
            out[f"{key} still ID"] = bool(e_new <= threshold)
        fig.axes[0].set_ylabel("energy (low = ID)")
        return out

    controls = {"delta": W.FloatSlider(value=0.0, min=-3, max=3, step=0.05, description="δ", continuous_update=False)}
    return FigureExplorer(controls, draw, figsize=(9, 3.3))


def lambda_explorer(models: Mapping[float, nn.Module], data: Benchmark, *, extent=(-6, 6, -6, 6),
                    resolution: int = 100, ood_name: str = "near", tpr: float = 0.95) -> FigureExplorer:
    """Energy and gradient-norm landscapes for models trained with different gradient weights.

    ``models`` maps lambda_grad -> a trained 2-D model (precomputed: a slider cannot train).
    Left: −E with the 95%-TPR boundary; right: ``||grad_x E||`` on a log scale. ``metrics``: FPR95
    on ``ood_name`` and on all OOD sets (mean), and the mean ``||grad_x E||`` on ID test points.
    """
    from matplotlib.colors import LogNorm

    from .lipschitz import input_gradient_norm

    if not models:
        raise ValueError("models is empty: pass {lambda_grad: trained model}")
    grid = make_grid(extent, resolution)
    cache = {}
    for lam, m in models.items():
        s_grid = (-energy(predict_logits(m, grid))).numpy().reshape(resolution, resolution)
        g_grid = input_gradient_norm(m, grid).numpy().reshape(resolution, resolution)
        s_id = -energy(predict_logits(m, data.test_x))
        s_ood = {k: -energy(predict_logits(m, v)) for k, v in data.ood.items()}
        cache[lam] = dict(s_grid=s_grid, g_grid=g_grid, t=threshold_at_tpr(s_id, tpr),
                          fpr=fpr_at_tpr(s_id, s_ood[ood_name], tpr),
                          fpr_mean=float(np.mean([fpr_at_tpr(s_id, v, tpr) for v in s_ood.values()])),
                          g_id=float(input_gradient_norm(m, data.test_x).mean()))
    gmax = max(float(c["g_grid"].max()) for c in cache.values())
    pts = {"ID": data.test_x[:300], ood_name: data.ood[ood_name][:300]}

    def draw(fig, lam: float) -> dict:
        c = cache[lam]
        ax_e, ax_g = _cleared_axes(fig, 2, wspace=0.2)
        score_landscape(c["s_grid"], extent, ax_e, threshold=c["t"], points=pts, colorbar=False, point_size=3)
        ax_e.set_title(f"−energy, λ∇ = {lam:g}", fontsize=9)
        ax_g.imshow(np.maximum(c["g_grid"], 1e-3), origin="lower", extent=extent, cmap="magma", aspect="auto",
                    norm=LogNorm(vmin=1e-2, vmax=max(gmax, 1e-1)))
        for (name, p), color in zip(pts.items(), ["#1f77b4", "#d62728"]):
            ax_g.scatter(p[:, 0], p[:, 1], s=3, color=color)
        ax_g.set_title("‖∇ₓE‖ (log colour scale, shared across λ)", fontsize=9)
        return {"lambda_grad": float(lam), f"FPR95 {ood_name}": c["fpr"], "FPR95 mean": c["fpr_mean"],
                "mean ‖∇E‖ on ID": c["g_id"]}

    options = sorted(models)
    controls = {"lam": W.SelectionSlider(options=options, value=options[0], description="λ∇", continuous_update=False)}
    return FigureExplorer(controls, draw, figsize=(9, 3.8))


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

    from .sampling import kmeans, plan_selection

    if data.input_shape != (2,):
        raise ValueError("sampling_explorer draws inputs in the plane: use a 2-D benchmark (gregnb.data.toy2d)")
    n_candidates = plan_selection("energy_cluster", batch_size).n_candidates
    gen = torch.Generator().manual_seed(0)
    draws = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for _ in range(n_draws):
            cand = data.aux_x[torch.randint(len(data.aux_x), (n_candidates,), generator=gen)]
            logits, feats = model(cand, return_features=True)
            f = feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)
            draws.append(dict(x=cand.numpy(), feats=feats, energy=energy(logits), fz=PCA(2).fit_transform(f.numpy())))
    model.train(was_training)
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


def radius_explorer(models: Mapping[str, nn.Module], data: Benchmark, eps_values=(0.1, 0.25, 0.5, 1.0), *,
                    n_points: int = 40, ood_name: str = "near", extent=(-6, 6, -6, 6), resolution: int = 100,
                    tpr: float = 0.95, steps: int = 10) -> FigureExplorer:
    """Certified radii (E8) as circles around toy points, over the energy landscape.

    Controls: ``model`` (e.g. energy loss vs GReg), ``eps`` (the ball on which L is taken: radii are
    capped at eps) and ``L`` ("local estimate": PGD estimate of sup ||grad E|| on each B_eps(x), not a
    guarantee; "global bound": product of spectral norms, sound but loose). Everything is precomputed.
    ``metrics``: median certified radius of the correctly detected ID and OOD points, the share of each
    certified at the full eps, and the global bound / median local estimate ratio.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    from .lipschitz import certified_radius, global_lipschitz_bound, local_lipschitz

    if data.input_shape != (2,):
        raise ValueError("radius_explorer draws circles in the plane: use a 2-D benchmark")
    grid = make_grid(extent, resolution)
    pts_id, pts_ood = data.test_x[:n_points], data.ood[ood_name][:n_points]
    pts = torch.cat([pts_id, pts_ood])
    cache = {}
    for label, m in models.items():
        e_test = energy(predict_logits(m, data.test_x))
        t = -threshold_at_tpr(-e_test, tpr)  # energy threshold: ID if E <= t
        e_pts = energy(predict_logits(m, pts))
        cache[label] = dict(
            grid=(-energy(predict_logits(m, grid))).numpy().reshape(resolution, resolution), t=t, e=e_pts,
            glob=global_lipschitz_bound(m),
            local={eps: local_lipschitz(m, pts, eps, steps=steps) for eps in eps_values})
    is_id_true = torch.cat([torch.ones(len(pts_id), dtype=torch.bool), torch.zeros(len(pts_ood), dtype=torch.bool)])

    def draw(fig, model: str, eps: float, L: str) -> dict:
        c = cache[model]
        if not fig.axes:
            fig.add_axes((0.08, 0.1, 0.6, 0.82))
        ax = fig.axes[0]
        ax.cla()
        score_landscape(c["grid"], extent, ax, threshold=-c["t"], colorbar=False,
                        points={"ID": pts_id, ood_name: pts_ood}, point_size=8)
        lip = c["local"][eps] if L == "local estimate" else c["glob"]
        r = certified_radius(c["e"], c["t"], lip, eps=eps)
        correct = (c["e"] <= c["t"]) == is_id_true
        circles = [Circle((float(p[0]), float(p[1])), float(rr)) for p, rr, ok in zip(pts, r, correct) if ok and rr > 0]
        colors = ["#1f77b4" if i else "#d62728" for i, ok in zip(is_id_true, correct) if ok]
        colors = [col for col, rr, ok in zip(colors, r[correct], [True] * int(correct.sum())) if rr > 0]
        ax.add_collection(PatchCollection(circles, facecolors="none", edgecolors=colors, linewidths=0.8))
        ax.set_title(f"{model}: certified radii, ε = {eps:g}, L = {L}", fontsize=9)
        rid, rood = r[is_id_true & correct], r[~is_id_true & correct]
        med = lambda v: float(v.median()) if len(v) else float("nan")  # noqa: E731
        return {"median radius ID": med(rid), "median radius OOD": med(rood),
                "ID certified at ε": float((rid >= eps - 1e-12).double().mean()) if len(rid) else 0.0,
                "OOD certified at ε": float((rood >= eps - 1e-12).double().mean()) if len(rood) else 0.0,
                "global / median local": c["glob"] / float(c["local"][eps].median())}

    controls = {
        "model": W.Dropdown(options=list(models), value=next(iter(models)), description="model"),
        "eps": W.SelectionSlider(options=list(eps_values), value=eps_values[-1], description="ε",
                                 continuous_update=False),
        "L": W.ToggleButtons(options=["local estimate", "global bound"], value="local estimate", description="L"),
    }
    return FigureExplorer(controls, draw, figsize=(7.5, 5))


from .sketchpad import PointExplorer, Sketchpad  # noqa: E402  (draw an input, see how every detector judges it)
