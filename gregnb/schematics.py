"""Schematics: the pictures that explain a mechanism better than prose, drawn by the package so the chapters and the
static site show the same figure (equation labels as in docs/method.md).

* :func:`mask_schematic`: GReg's masks (E6) on an energy histogram: which rows the energy loss moves and which the
  gradient penalty flattens, for given margins (chapter 03).
* :func:`algorithm1_schematic`: Algorithm 1 of the paper (GReg+) as a flow from the pool to the picks (chapter 05).
* :func:`certified_ball_schematic`: a certified ball (E8) against the detector's threshold (chapter 07).
"""
from __future__ import annotations

import numpy as np

__all__ = ["mask_shares", "mask_schematic", "algorithm1_schematic", "certified_ball_schematic"]


def _axes(ax, figsize):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    return ax


def _energies(e) -> np.ndarray:
    """Energies (a tensor, array or list) as a flat float array."""
    return np.asarray(e.detach() if hasattr(e, "detach") else e, dtype=float).ravel()


def mask_shares(e_id, e_ood, m_in: float, m_out: float) -> dict[str, float]:
    """The shares of ID rows with ``E <= m_in`` and of outlier rows with ``E >= m_out``: the rows GReg's masks (E6)
    keep in the gradient penalty (the rest are still moved by the energy loss). Energies in energy units, low = ID."""
    e_id, e_ood = _energies(e_id), _energies(e_ood)
    if e_id.size == 0 or e_ood.size == 0:
        raise ValueError("mask_shares needs at least one ID and one outlier energy")
    if not m_in < m_out:
        raise ValueError(f"the margins must satisfy m_in < m_out, got m_in={m_in}, m_out={m_out}")
    return {"ID rows penalised": float((e_id <= m_in).mean()), "outliers penalised": float((e_ood >= m_out).mean())}


def mask_schematic(e_id, e_ood, m_in: float, m_out: float, ax=None, bins: int = 40):
    """Histograms of ID and outlier energies with the margins: shaded where each kind of row is *penalised* by the
    gradient term (ID below ``m_in``, outliers above ``m_out``); elsewhere the energy loss still moves it."""
    ax = _axes(ax, (7, 3.2))
    e_id, e_ood = _energies(e_id), _energies(e_ood)
    shares = mask_shares(e_id, e_ood, m_in, m_out)
    lo, hi = min(e_id.min(), e_ood.min(), m_in) - 1, max(e_id.max(), e_ood.max(), m_out) + 1
    edges = np.linspace(lo, hi, bins + 1)
    ax.hist(e_id, edges, alpha=0.55, color="tab:blue", label="ID rows")
    ax.hist(e_ood, edges, alpha=0.55, color="tab:orange", label="outlier rows")
    ax.axvspan(lo, m_in, color="tab:blue", alpha=0.08)
    ax.axvspan(m_out, hi, color="tab:orange", alpha=0.08)
    for m, name in ((m_in, "$m_{in}$"), (m_out, "$m_{out}$")):
        ax.axvline(m, color="k", lw=1.2, ls="--")
        ax.annotate(name, (m, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=9)
    ax.text(0.01, 0.9, f"ID rows penalised (E ≤ m_in): {100 * shares['ID rows penalised']:.0f} %",
            transform=ax.transAxes, va="top", fontsize=8, color="tab:blue")
    ax.text(0.99, 0.9, f"outliers penalised (E ≥ m_out): {100 * shares['outliers penalised']:.0f} %",
            transform=ax.transAxes, va="top", ha="right", fontsize=8, color="tab:orange")
    ax.set_xlabel("energy E(x) (low = ID)")
    ax.set_ylabel("rows")
    ax.legend(loc="center right", fontsize=8)
    return ax


_STEPS = ("pool of outliers", "draw 6B candidates", "features h(x), energies E(x)\n(eval mode, no gradient)",
          "normalise rows, k-means\n(k = B clusters)", "per cluster: lowest E\n(+ highest E, two-way)",
          "OOD batch: a strict subset\n(2B picks) → GReg step")


def algorithm1_schematic(ax=None):
    """Algorithm 1 of the paper (energy-based sampling, GReg+) as boxes and arrows, one step of training."""
    ax = _axes(ax, (11, 2.4))
    n = len(_STEPS)
    for i, text in enumerate(_STEPS):
        x = i / (n - 1)
        ax.annotate(text, (x, 0.5), xycoords="axes fraction", ha="center", va="center", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.4", fc="tab:green" if i == n - 1 else "0.93", ec="0.4",
                              alpha=0.35 if i == n - 1 else 1.0))
        if i:
            ax.annotate("", ((i - 0.38) / (n - 1), 0.5), ((i - 0.62) / (n - 1), 0.5), xycoords="axes fraction",
                        arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.set_axis_off()
    ax.set_title("Algorithm 1 (GReg+): one training step's outliers", fontsize=9)
    return ax


def certified_ball_schematic(ax=None, energy: float = -8.0, threshold: float = -5.0, lipschitz: float = 2.0):
    """A point detected as ID (``energy`` below ``threshold``) and its certified ball of radius
    ``(threshold - energy) / lipschitz`` (E8), drawn on the plane of an energy that rises at rate ``lipschitz``
    towards the threshold line: every input in the ball keeps ``E <= threshold``."""
    if not energy < threshold or lipschitz <= 0:
        raise ValueError("draw an ID point: energy below threshold, and a positive Lipschitz constant")
    import matplotlib.patches as patches

    ax = _axes(ax, (4.2, 3.6))
    r = (threshold - energy) / lipschitz
    xs = np.linspace(-0.5, r + 1.5, 200)
    ax.fill_between(xs, -2.5, 2.5, where=xs >= r, color="tab:red", alpha=0.1)
    ax.axvline(r, color="tab:red", lw=1.5)
    ax.text(r + 0.05, 2.2, "E = γ: the threshold\n(rejected as OOD beyond)", fontsize=8, color="tab:red", va="top")
    ax.add_patch(patches.Circle((0, 0), r, fill=True, alpha=0.2, color="tab:blue"))
    ax.plot([0], [0], "o", color="tab:blue")
    ax.annotate("", (r, 0), (0, 0), arrowprops=dict(arrowstyle="<->", color="k"))
    ax.text(r / 2, 0.25 * r, "ε* = (γ − E(x)) / L", ha="center", fontsize=8)
    ax.text(0, -0.35, f"x: E(x) = {energy:g}", ha="center", fontsize=8)
    ax.set_xlim(-r - 0.5, r + 1.5)
    ax.set_ylim(-2.5, 2.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"certified ball (E8): γ = {threshold:g}, L = {lipschitz:g}", fontsize=9)
    return ax
