"""Chapters 02-03: margins over live histograms, the Taylor picture, landscapes per gradient weight.
Equation labels (E4), (E5) refer to docs/method.md."""
from __future__ import annotations

import copy
from typing import Mapping

import ipywidgets as W
import numpy as np
import torch
from torch import nn

from ..data.base import Benchmark
from ..inference import predict_logits
from ..evaluate import evaluate
from ..losses import energy_margin_loss
from ..metrics import fpr_at_tpr, threshold_at_tpr
from ..scores import energy
from ..viz import make_grid, score_landscape
from .base import FigureExplorer, _cleared_axes

__all__ = ["margin_explorer", "taylor_explorer", "lambda_explorer"]


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
    from ..train import fit

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
    """The paper's motivating illustration (the Taylor picture, (E5)) in 1-D: two ID points with the same
    energy but different slopes; a perturbation delta moves both. The steep one crosses the threshold first.

    Each point's energy along the line is ``S(x0 + d) = score_level + slope * d + 0.15 * d^2`` (a little
    curvature, so the tangent is only first-order). Controls: ``delta``. ``metrics``: both energies
    at the perturbed points, whether each is still accepted as ID, each first-order radius
    ``(threshold - score_level) / |slope|`` (the band) and each true radius, the smallest ``|d|`` at which
    the curve itself reaches the threshold (the vertical lines): the curve crosses *inside* the band, so a
    gradient at one point certifies nothing; a bound on the slope over the whole ball does (chapter 07).
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
            true_r = _crossing(score_level, slope, curv, threshold)
            ax.axvline(true_r, color="k", lw=1)
            ax.axvline(-true_r, color="k", lw=1, label=f"true crossing |d| = {true_r:.2f}")
            ax.set_ylim(score_level - 4, threshold + 4)
            ax.set_xlabel("perturbation d")
            ax.set_title(name, fontsize=9)
            ax.legend(fontsize=7, loc="lower right")
            key = "flat" if slope == slopes[0] else "steep"
            out[f"E({key}+δ)"] = float(e_new)
            out[f"{key} still ID"] = bool(e_new <= threshold)
            out[f"{key} first-order radius"] = float(radius)
            out[f"{key} true radius"] = float(true_r)
        fig.axes[0].set_ylabel("energy (low = ID)")
        return out

    controls = {"delta": W.FloatSlider(value=0.0, min=-3, max=3, step=0.05, description="δ", continuous_update=False)}
    return FigureExplorer(controls, draw, figsize=(9, 3.3))


def _crossing(level: float, slope: float, curv: float, threshold: float) -> float:
    """Smallest ``|d|`` with ``level + slope * d + curv * d^2 = threshold`` (``curv > 0``, ``level < threshold``)."""
    gap = threshold - level
    roots = [(-b + (b * b + 4 * curv * gap) ** 0.5) / (2 * curv) for b in (slope, -slope)]  # d > 0 and -d > 0
    return float(min(roots))


def lambda_explorer(models: Mapping[float, nn.Module], data: Benchmark, *, extent=(-6, 6, -6, 6),
                    resolution: int = 100, ood_name: str = "near", tpr: float = 0.95) -> FigureExplorer:
    """Energy and gradient-norm landscapes for models trained with different gradient weights.

    ``models`` maps lambda_grad -> a trained 2-D model (precomputed: a slider cannot train).
    Left: −E with the 95%-TPR boundary; right: ``||grad_x E||`` on a log scale. ``metrics``: FPR95
    on ``ood_name`` and on all OOD sets (mean), and the mean ``||grad_x E||`` on ID test points.
    """
    from matplotlib.colors import LogNorm

    from ..lipschitz import input_gradient_norm

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
