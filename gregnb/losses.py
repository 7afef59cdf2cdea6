"""Training objectives: Outlier Exposure, the energy margin loss and GReg's gradient penalty.

Equation labels (E1)-(E9) refer to docs/method.md (the collection's summary of the method).
Notation (the GReg paper's): energies ``E = -T logsumexp(f(x)/T)``, LOW = ID. A batch is the ID rows
followed by the auxiliary (OOD) rows: ``inputs[:n_id]`` are ID, ``inputs[n_id:]`` are outliers.

* (E4) :func:`energy_margin_loss`  ``mean_ID relu(E - m_in)^2 + mean_OOD relu(m_out - E)^2``
* (E6) :func:`greg_penalty`        ``mean_ID 1{E <= m_in} ||grad_x E|| + mean_OOD 1{E >= m_out} ||grad_x E||``
* (E7) :func:`greg_objective`      ``CE + lambda_s * L_S + lambda_grad * L_grad``

The indicators of (E6) are the exact complements of the hinges of (E4): the energy loss acts on
samples not yet past their margin; the gradient penalty flattens the score around samples that are.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from .inference import predict_logits
from .scores import energy

__all__ = ["energy_margin_loss", "oe_loss", "greg_penalty", "penalty_logs", "greg_objective", "propose_margins",
           "CONVENTIONS",
           "GREG_CIFAR_MARGINS", "ENERGY_CIFAR10_MARGINS", "ENERGY_CIFAR100_MARGINS"]

CONVENTIONS = ("paper", "reference")
#: GReg's margins ``(m_in, m_out)`` on CIFAR: the defaults of the authors' code (github.com/o4lc/Greg-OOD), T = 1.
GREG_CIFAR_MARGINS = (-25.0, -7.0)
#: The energy paper's margins on CIFAR-10 and CIFAR-100 (Liu et al. 2020, its run script), T = 1.
ENERGY_CIFAR10_MARGINS = (-23.0, -5.0)
ENERGY_CIFAR100_MARGINS = (-27.0, -5.0)


def _check_finite(name: str, t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN/inf; the model's logits have probably overflowed "
                         f"(lower the learning rate or check the inputs)")


def _check_margins(m_in, m_out) -> None:
    """Both margins finite numbers with ``m_in < m_out`` (LOW energy = ID)."""
    for name, m in (("m_in", m_in), ("m_out", m_out)):
        if isinstance(m, bool) or not isinstance(m, numbers.Real) or not math.isfinite(m):
            raise ValueError(f"{name} must be a finite number, got {m!r}; "
                             f"gregnb.losses.propose_margins(model, id_x, aux_x) suggests a pair")
    if not m_in < m_out:
        raise ValueError(f"m_in must be below m_out (low energy = ID), got m_in={m_in}, m_out={m_out}")


def _check_weight(name: str, w) -> None:
    if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {w!r}")


def energy_margin_loss(energy_id: torch.Tensor, energy_ood: torch.Tensor, m_in: float, m_out: float) -> torch.Tensor:
    """Squared-hinge energy loss (E4, docs/method.md; Liu et al. 2020): pushes ID energies below ``m_in`` and
    outlier energies above ``m_out``. Means are taken separately over the two parts. Scalar."""
    if energy_id.ndim != 1 or energy_ood.ndim != 1 or len(energy_id) == 0 or len(energy_ood) == 0:
        raise ValueError(f"energy_id and energy_ood must be non-empty 1-D tensors, got shapes "
                         f"{tuple(energy_id.shape)} and {tuple(energy_ood.shape)}")
    _check_margins(m_in, m_out)
    return F.relu(energy_id - m_in).pow(2).mean() + F.relu(m_out - energy_ood).pow(2).mean()


def oe_loss(logits_ood: torch.Tensor) -> torch.Tensor:
    """Outlier Exposure (Hendrycks et al. 2019): cross-entropy from the softmax of the outliers'
    logits ``(M, K)`` to the uniform distribution, averaged over samples:
    ``mean_i [logsumexp(z_i) - mean_k z_ik]``. It is >= log K, with equality when all logits are
    equal (the model says "no idea" on outliers). Hendrycks et al. weight it by 0.5."""
    if logits_ood.ndim != 2 or len(logits_ood) == 0:
        raise ValueError(f"logits_ood must have shape (M, K) with M >= 1, got {tuple(logits_ood.shape)}")
    return (torch.logsumexp(logits_ood, dim=1) - logits_ood.mean(dim=1)).mean()


def _masks(energies: torch.Tensor, n_id: int, m_in: float, m_out: float, convention: str, penalize: str):
    e = energies.detach()
    if penalize == "all":
        return torch.ones_like(e[:n_id]), torch.ones_like(e[n_id:])
    if convention == "paper":  # (E6): the exact complements of the hinges, with ties included
        return (e[:n_id] <= m_in).to(e.dtype), (e[n_id:] >= m_out).to(e.dtype)
    # the authors' code: the gradient of relu(m_in - E) / relu(E - m_out) is zero at the tie
    return (e[:n_id] < m_in).to(e.dtype), (e[n_id:] > m_out).to(e.dtype)


def greg_penalty(inputs: torch.Tensor, energies: torch.Tensor, n_id: int, m_in: float, m_out: float, *,
                 convention: str = "paper", penalize: str = "correct", return_norms: bool = False):
    """GReg's input-gradient penalty (E6), differentiable w.r.t. the model's parameters.

    Args:
        inputs: ``(N, ...)`` the batch [ID rows; outlier rows], with ``requires_grad=True``, from which
            ``energies`` were computed in one forward pass.
        energies: ``(N,)`` energies of the batch (LOW = ID).
        n_id: number of ID rows, in ``[1, N-1]``.
        m_in, m_out: the energy margins; a row is "correctly detected" if ID with ``E <= m_in``
            or outlier with ``E >= m_out``.
        convention: ``"paper"`` (E6): ``mean_ID mask*||g|| + mean_OOD mask*||g||``, where ``g`` is
            each row's gradient of the masked SUM of energies (without coupling between rows,
            ``g_i = mask_i * grad_x E_i``). ``"reference"``: the computation of the authors' code
            (github.com/o4lc/Greg-OOD): the row gradients of ``-mean_ID relu(m_in - E) + mean_OOD relu(E - m_out)``,
            whose norms are averaged over all N rows; its masks are strict. That scalar weights ID rows by
            1/n_id and outlier rows by 1/n_ood *before* differentiating, so "reference" = "paper" / N exactly
            when no BatchNorm couples the rows (no BN, or eval mode) or when n_id = n_ood (the authors' GReg
            batch, 64 + 64); with BatchNorm in train mode and n_id != n_ood (two-way GReg+, 64 + 128) the
            ratio is close to N but not equal (chapter 03 measures it).
        penalize: ``"correct"`` (the method) or ``"all"`` (the ablation: penalise every row).
        return_norms: also return the ``(N,)`` per-row gradient norms (detached).

    One ``torch.autograd.grad(..., create_graph=True)`` on the existing graph; no second forward.
    With BatchNorm in train mode, rows are coupled through the batch statistics, and each row's gradient
    then includes the other rows' influence (under "reference" exactly as the authors' code computes it).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if penalize not in ("correct", "all"):
        raise ValueError(f"penalize must be 'correct' or 'all', got {penalize!r}")
    if not isinstance(inputs, torch.Tensor) or not inputs.requires_grad:
        raise ValueError("inputs must be a tensor with requires_grad=True, and the energies must be computed "
                         "from it: x = x.requires_grad_(); energies = energy(model(x))")
    if energies.ndim != 1 or len(energies) != len(inputs):
        raise ValueError(f"energies must have shape (N,) with N = len(inputs) = {len(inputs)}, got {tuple(energies.shape)}")
    n = len(inputs)
    if isinstance(n_id, bool) or not isinstance(n_id, numbers.Integral) or not 1 <= n_id <= n - 1:
        raise ValueError(f"n_id must be a whole number in [1, N-1] = [1, {n - 1}] (both parts non-empty), got {n_id!r}")
    n_id = int(n_id)
    _check_margins(m_in, m_out)
    _check_finite("energies", energies)
    mask_id, mask_ood = _masks(energies, n_id, m_in, m_out, convention, penalize)
    if convention == "paper":
        target = (mask_id * energies[:n_id]).sum() + (mask_ood * energies[n_id:]).sum()
    else:
        e_id, e_ood = energies[:n_id], energies[n_id:]
        if penalize == "all":
            target = e_id.mean() + e_ood.mean()
        else:
            target = -F.relu(m_in - e_id).mean() + F.relu(e_ood - m_out).mean()
    (grad,) = torch.autograd.grad(target, inputs, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)
    if convention == "paper":
        penalty = norms[:n_id].mean() + norms[n_id:].mean()
    else:
        penalty = norms.mean()
    return (penalty, norms.detach()) if return_norms else penalty


@torch.no_grad()
def penalty_logs(energies: torch.Tensor, n_id: int, m_in: float, m_out: float, norms: torch.Tensor | None = None, *,
                 convention: str = "paper", penalize: str = "correct") -> dict[str, float]:
    """What the gradient penalty (E6) acted on in one batch, for the step logs.

    Args:
        energies: ``(N,)`` the batch's energies, ID rows first (LOW = ID).
        n_id: number of ID rows.
        m_in, m_out, convention, penalize: as for :func:`greg_penalty`.
        norms: ``(N,)`` the per-row gradient norms :func:`greg_penalty` returned (``return_norms=True``), or
            None on a step without the gradient term (its parts are then 0).

    Returns floats: ``masked_id`` / ``masked_ood``, the share of ID / outlier rows the penalty's mask selects
    (``E <= m_in`` / ``E >= m_out``, strict under "reference", every row under ``penalize="all"``), logged on
    every step, with or without the term (the share a penalty *would* act on); ``loss_grad_id`` /
    ``loss_grad_ood``, the ID and outlier parts of the penalty, which add up to it (paper: the two means of
    (E6); reference: each part's sum of norms / N). With BatchNorm in train mode an unmasked row's gradient
    need not be zero (the rows are coupled), so a part can be non-zero with no row of it masked.
    """
    if convention not in CONVENTIONS or penalize not in ("correct", "all"):
        raise ValueError(f"convention must be one of {CONVENTIONS} and penalize 'correct' or 'all', got "
                         f"{convention!r} and {penalize!r}")
    if energies.ndim != 1 or not 1 <= n_id <= len(energies) - 1 or (norms is not None and norms.shape != energies.shape):
        raise ValueError(f"energies must be (N,) with 1 <= n_id <= N-1 and norms (N,) or None; got energies "
                         f"{tuple(energies.shape)}, n_id {n_id}, norms {None if norms is None else tuple(norms.shape)}")
    mask_id, mask_ood = _masks(energies, n_id, m_in, m_out, convention, penalize)
    if norms is None:
        g_id = g_ood = 0.0
    elif convention == "paper":
        g_id, g_ood = norms[:n_id].mean().item(), norms[n_id:].mean().item()
    else:
        g_id, g_ood = (norms[:n_id].sum() / len(norms)).item(), (norms[n_id:].sum() / len(norms)).item()
    return {"masked_id": mask_id.mean().item(), "masked_ood": mask_ood.mean().item(),
            "loss_grad_id": g_id, "loss_grad_ood": g_ood}


def greg_objective(model: nn.Module, x_id: torch.Tensor, y_id: torch.Tensor, x_ood: torch.Tensor, *,
                   m_in: float, m_out: float, lambda_s: float = 0.1, lambda_grad: float = 1.0,
                   convention: str = "paper", penalize: str = "correct", temperature: float = 1.0):
    """The total loss (E7) for one batch: ``CE + lambda_s * L_S + lambda_grad * L_grad``.

    One forward pass over ``[x_id; x_ood]`` (so BatchNorm sees both parts, as in the authors' code).
    With ``lambda_grad == 0`` this is the energy loss of Liu et al. and no input gradient is built.

    Returns:
        ``(total, parts)``: the scalar loss and a dict of floats for logging: ``loss_ce``,
        ``loss_energy``, ``loss_grad`` (the penalty, before its weight; 0 when ``lambda_grad == 0``),
        ``past_m_in`` (share of ID rows with ``E <= m_in``), ``past_m_out`` (share of outlier rows with
        ``E >= m_out``), ``train_acc``, and :func:`penalty_logs`' ``masked_id``, ``masked_ood`` (the share of
        each part's rows the penalty's mask selects), ``loss_grad_id``, ``loss_grad_ood`` (the penalty's parts).
    """
    if len(x_id) != len(y_id):
        raise ValueError(f"x_id and y_id must have the same length, got {len(x_id)} and {len(y_id)}")
    if not isinstance(y_id, torch.Tensor) or y_id.is_floating_point() or y_id.is_complex() or y_id.dtype == torch.bool:
        raise ValueError(f"y_id must be a tensor of integer class labels, got "
                         f"{getattr(y_id, 'dtype', type(y_id).__name__)}; convert with .long()")
    _check_margins(m_in, m_out)
    _check_weight("lambda_s", lambda_s)
    _check_weight("lambda_grad", lambda_grad)
    n_id = len(x_id)
    x = torch.cat([x_id, x_ood])
    use_grad = lambda_grad != 0
    if use_grad:
        x = x.detach().requires_grad_(True)
    logits = model(x)
    e = energy(logits, temperature)
    _check_finite("energies", e)
    ce = F.cross_entropy(logits[:n_id], y_id)
    l_s = energy_margin_loss(e[:n_id], e[n_id:], m_in, m_out)
    total = ce + lambda_s * l_s
    l_g, norms = torch.zeros((), device=e.device), None
    if use_grad:
        l_g, norms = greg_penalty(x, e, n_id, m_in, m_out, convention=convention, penalize=penalize, return_norms=True)
        total = total + lambda_grad * l_g
    with torch.no_grad():
        parts = {
            "loss_ce": ce.item(), "loss_energy": l_s.item(), "loss_grad": l_g.item(),
            "past_m_in": (e[:n_id] <= m_in).float().mean().item(),
            "past_m_out": (e[n_id:] >= m_out).float().mean().item(),
            "train_acc": (logits[:n_id].argmax(1) == y_id).float().mean().item(),
            **penalty_logs(e, n_id, m_in, m_out, norms, convention=convention, penalize=penalize),
        }
    return total, parts


@torch.no_grad()
def propose_margins(model: nn.Module, id_x: torch.Tensor, aux_x: torch.Tensor, *, temperature: float = 1.0,
                    max_samples: int = 4000) -> tuple[float, float]:
    """Margins ``(m_in, m_out)`` that fit a trained (e.g. cross-entropy) model, following the energy
    paper author's advice (in its code's issue tracker): put them near the model's mean ID and mean
    outlier energies.

    ``m_in = mean E(ID)``; ``m_out = max(mean E(aux), m_in + max(2, 2 * std E(ID)))``. The second
    term keeps a gap when the model gives outliers *lower* energy than ID data (a ReLU network far
    from its data does), where the plain advice would put ``m_out`` below ``m_in``. The published CIFAR
    margins, GReg's ``(-25, -7)`` (:data:`GREG_CIFAR_MARGINS`) and the energy paper's ``(-23, -5)``
    (:data:`ENERGY_CIFAR10_MARGINS`), were chosen for large CIFAR networks, not the small models here.
    """
    energies = []
    for name, x in (("id_x", id_x), ("aux_x", aux_x)):
        x = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
        if len(x) == 0:
            raise ValueError(f"{name} is empty; propose_margins needs ID and auxiliary samples")
        if x.is_floating_point() and not torch.isfinite(x[:max_samples]).all():
            raise ValueError(f"{name} contains NaN/inf values; fix the data (the margins would be NaN)")
        e = energy(predict_logits(model, x[:max_samples]), temperature).double()
        if not torch.isfinite(e).all():
            raise ValueError(f"the model gives non-finite energies on {name} (its logits overflow or it holds "
                             f"NaN weights); check the model before proposing margins")
        energies.append(e)
    e_id, e_aux = energies
    m_in = e_id.mean().item()
    gap = max(2.0, 2.0 * e_id.std().item())
    m_out = max(e_aux.mean().item(), m_in + gap)
    return float(m_in), float(m_out)
