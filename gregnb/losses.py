"""Training objectives, written once for :func:`gregnb.train.fit` (one model) and :func:`gregnb.train.fit_many`
(M stacked members). Equation labels (E1)-(E9) refer to docs/method.md. Energies ``E = -T logsumexp(f(x)/T)``, LOW =
ID; a batch is the ID rows followed by the auxiliary (OOD) rows: ``inputs[:n_id]`` ID, ``inputs[n_id:]`` outliers.

* (E3) :func:`ce_loss`             ``mean_ID -log softmax(f(x))_y``
* (E4) :func:`energy_margin_loss`  ``mean_ID relu(E - m_in)^2 + mean_OOD relu(m_out - E)^2``
* (E6) :func:`greg_penalty`        ``mean_ID 1{E <= m_in} ||grad_x E|| + mean_OOD 1{E >= m_out} ||grad_x E||``
* (E7) :func:`greg_objective`      ``CE + lambda_s * L_S + lambda_grad * L_grad``; :func:`oe_objective`
  ``CE + lambda_oe * L_OE (+ lambda_grad * L_grad)``; :func:`ce_objective` ``CE``

The indicators of (E6) are the exact complements of the hinges of (E4): the energy loss acts on samples not yet
past their margin; the gradient penalty flattens the score around samples that are.

**Stacked members.** Each function also takes M models' tensors with a leading member axis (energies ``(M, N)``,
logits ``(M, N, K)``, labels ``(M, B)``, inputs ``(M, N, ...)``) and returns ``(M,)``, one loss per member (their
sum trains each as alone), margins and weights being numbers (0-d tensors, NumPy scalars) or ``(M,)`` tensors. Each
reduction runs along one member's rows, so a member gets what the same call gives it alone (bit for bit for the
toy MLPs: ``tests/test_one_implementation.py``).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .inference import predict_logits
from .scores import energy
from .validate import scalar

__all__ = ["ce_loss", "energy_margin_loss", "oe_loss", "greg_penalty", "penalty_logs", "ce_objective", "oe_objective",
           "greg_objective", "member_energy", "propose_margins", "CONVENTIONS", "PENALIZE",
           "GREG_CIFAR_MARGINS", "ENERGY_CIFAR10_MARGINS", "ENERGY_CIFAR100_MARGINS"]

CONVENTIONS = ("paper", "reference")
PENALIZE = ("correct", "all")  # the gradient term on correctly detected rows (GReg) or on every row (the ablation)
#: GReg's margins ``(m_in, m_out)`` on CIFAR: the defaults of the authors' code (github.com/o4lc/Greg-OOD), T = 1.
GREG_CIFAR_MARGINS = (-25.0, -7.0)
#: The energy paper's margins on CIFAR-10 and CIFAR-100 (Liu et al. 2020, its run script), T = 1.
ENERGY_CIFAR10_MARGINS = (-23.0, -5.0)
ENERGY_CIFAR100_MARGINS = (-27.0, -5.0)
_HINT = "; gregnb.losses.propose_margins(model, id_x, aux_x) suggests a pair"


def _check_finite(name: str, t: torch.Tensor) -> None:
    if not (good := torch.isfinite(t)).all():
        member = f" (member {int((~good).flatten(1).any(1).nonzero()[0])})" if t.ndim > 1 else ""
        raise ValueError(f"{name} contains NaN/inf{member}; the model's logits have probably overflowed "
                         f"(lower the learning rate or check the inputs)")


def _members(name: str, t, ndims: tuple[int, int]) -> int | None:
    """None for one model's tensor (``t.ndim == ndims[0]``), M for M stacked members' (``ndims[1]``)."""
    if not isinstance(t, torch.Tensor) or t.ndim not in ndims:
        raise (ValueError if isinstance(t, torch.Tensor) else TypeError)(
            f"{name} must be a tensor with {ndims[0]} dimensions (one model) or {ndims[1]} (a leading member axis), "
            f"got {f'shape {tuple(t.shape)}' if isinstance(t, torch.Tensor) else type(t).__name__}")
    return None if t.ndim == ndims[0] else t.shape[0]


def _setting(name: str, v, members: int | None, *, low: float = -math.inf, hint: str = ""):
    """A margin or weight, finite and ``>= low``: a Python number (given any number type) or an ``(M,)`` tensor."""
    if isinstance(v, torch.Tensor) and v.ndim == 1:
        if members is None or len(v) != members:
            raise ValueError(f"{name}: a per-member tensor of shape {tuple(v.shape)} needs inputs with a member axis "
                             f"of that length ({members}); pass a number for one model")
        bad = not torch.isfinite(v).all() or (v < low).any()
    else:
        v = v.item() if isinstance(v, (torch.Tensor, np.ndarray, np.generic)) and np.ndim(v) == 0 else v
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a number or an (M,) tensor, got {v!r} ({type(v).__name__}){hint}")
        bad = not math.isfinite(v) or v < low
    if bad:
        raise ValueError(f"{name} must be a finite number{f' >= {low:g}' if low > -math.inf else ''} (per member: each "
                         f"one), got {v!r}{hint}")
    return v


def _all(condition) -> bool:
    return bool(condition.all()) if isinstance(condition, torch.Tensor) else bool(condition)


def _margins(m_in, m_out, members: int | None):
    """Both margins as :func:`_setting` gives them, with ``m_in < m_out`` (LOW energy = ID)."""
    m_in, m_out = _setting("m_in", m_in, members, hint=_HINT), _setting("m_out", m_out, members, hint=_HINT)
    if not _all(m_in < m_out):
        raise ValueError(f"m_in must be below m_out (low energy = ID), got m_in={m_in!r}, m_out={m_out!r}")
    return m_in, m_out


def _cast(v, like: torch.Tensor):  # a per-member setting in like's dtype and device (a number unchanged)
    return v.to(device=like.device, dtype=like.dtype) if isinstance(v, torch.Tensor) else v


def _columns(m_in, m_out, like: torch.Tensor):  # margins to compare with energies like: (M, 1) columns per member
    return tuple(_cast(m, like).unsqueeze(-1) if isinstance(m, torch.Tensor) else m for m in (m_in, m_out))


def _split(t: torch.Tensor, n_id: int, members: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ID rows and the outlier rows of a batch ``(N, ...)`` or of M members' ``(M, N, ...)``."""
    return (t[:n_id], t[n_id:]) if members is None else (t[:, :n_id], t[:, n_id:])


def member_energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """:func:`gregnb.scores.energy` (E2, LOW = ID, logit units) of one model's logits ``(N, K) -> (N,)``, or row by
    row of M members' ``(M, N, K) -> (M, N)``, at one temperature T > 0."""
    one = _members("logits", logits, (2, 3)) is None
    return energy(logits, temperature) if one else energy(logits.flatten(0, 1), temperature).view(logits.shape[:2])


def _labels(name: str, y) -> None:  # integer class labels
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be a tensor of integer class labels, got "
                         f"{getattr(y, 'dtype', type(y).__name__)}; convert with .long()")


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (E3) of logits ``(B, K)`` against integer labels ``(B,)``, the batch mean (a scalar); of M members'
    ``(M, B, K)``, ``(M, B)``: each member's mean of its per-row losses, ``(M,)`` (same gradient; the value's last
    bit can differ from ``F.cross_entropy``'s mean, which one model keeps)."""
    members = _members("logits", logits, (2, 3))
    _labels("y", y)
    if tuple(y.shape) != tuple(logits.shape[:-1]) or logits.shape[-2] == 0:
        raise ValueError(f"y must have shape {tuple(logits.shape[:-1])}, one label per row of logits (at least one "
                         f"row), got {tuple(y.shape)}")
    if members is None:
        return F.cross_entropy(logits, y)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)


def energy_margin_loss(energy_id: torch.Tensor, energy_ood: torch.Tensor, m_in, m_out) -> torch.Tensor:
    """Squared-hinge energy loss (E4, docs/method.md; Liu et al. 2020): pushes ID energies ``(n,)`` below ``m_in``
    and outlier energies ``(a,)`` above ``m_out`` (energy units). Means are taken separately over the two parts.
    Scalar; ``(M,)`` for M members' ``(M, n)`` and ``(M, a)`` (margins numbers or ``(M,)`` tensors)."""
    members = _members("energy_id", energy_id, (1, 2))
    if _members("energy_ood", energy_ood, (1, 2)) != members or energy_id.shape[-1] == 0 or energy_ood.shape[-1] == 0:
        raise ValueError(f"energy_id and energy_ood must be non-empty, both (n,) or both (M, n), got shapes "
                         f"{tuple(energy_id.shape)} and {tuple(energy_ood.shape)}")
    m_in, m_out = _columns(*_margins(m_in, m_out, members), energy_id)
    return F.relu(energy_id - m_in).pow(2).mean(-1) + F.relu(m_out - energy_ood).pow(2).mean(-1)


def oe_loss(logits_ood: torch.Tensor) -> torch.Tensor:
    """Outlier Exposure (Hendrycks et al. 2019): cross-entropy from the softmax of the outliers' logits ``(A, K)``
    to the uniform distribution, averaged over samples: ``mean_i [logsumexp(z_i) - mean_k z_ik]``. It is >= log K,
    with equality when all logits are equal (the model says "no idea" on outliers). Hendrycks et al. weight it by
    0.5. Scalar; ``(M,)`` for M members' ``(M, A, K)``."""
    _members("logits_ood", logits_ood, (2, 3))
    if logits_ood.shape[-2] == 0 or logits_ood.shape[-1] == 0:
        raise ValueError(f"logits_ood must have shape (A, K) or (M, A, K) with A >= 1 outliers and K >= 1 classes, "
                         f"got {tuple(logits_ood.shape)}")
    return (torch.logsumexp(logits_ood, dim=-1) - logits_ood.mean(dim=-1)).mean(-1)


def _check_choices(convention: str, penalize: str, n_id=1, n: int = 2) -> int:  # and n_id among n rows, as an int
    if convention not in CONVENTIONS or penalize not in PENALIZE:
        raise ValueError(f"convention must be one of {CONVENTIONS} and penalize one of {PENALIZE}, got "
                         f"convention={convention!r}, penalize={penalize!r}")
    if isinstance(n_id := scalar(n_id), bool) or not isinstance(n_id, numbers.Integral) or not 1 <= n_id <= n - 1:
        raise ValueError(f"n_id must be a whole number in [1, N-1] = [1, {n - 1}] (both parts non-empty), got {n_id!r}")
    return int(n_id)


def _masks(e_id: torch.Tensor, e_ood: torch.Tensor, m_in, m_out, convention: str, penalize: str):
    """The rows (E6)'s penalty acts on, as 0/1 in the energies' dtype (margins as :func:`_columns` gives them)."""
    e_id, e_ood = e_id.detach(), e_ood.detach()
    if penalize == "all":
        return torch.ones_like(e_id), torch.ones_like(e_ood)
    if convention == "paper":  # (E6): the exact complements of the hinges, with ties included
        return (e_id <= m_in).to(e_id.dtype), (e_ood >= m_out).to(e_ood.dtype)
    # the authors' code: the gradient of relu(m_in - E) / relu(E - m_out) is zero at the tie
    return (e_id < m_in).to(e_id.dtype), (e_ood > m_out).to(e_ood.dtype)


def greg_penalty(inputs: torch.Tensor, energies: torch.Tensor, n_id: int, m_in, m_out, *,
                 convention: str = "paper", penalize: str = "correct", return_norms: bool = False):
    """GReg's input-gradient penalty (E6), differentiable w.r.t. the model's parameters.

    ``inputs`` ``(N, ...)``: the batch [ID rows; outlier rows] (``(M, N, ...)`` for M members), with
    ``requires_grad=True``, from which ``energies`` ``(N,)`` (``(M, N)``; LOW = ID) were computed; ``n_id`` ID rows,
    in ``[1, N-1]``; a row is "correctly detected" if ID with ``E <= m_in`` or outlier with ``E >= m_out``.
    ``convention="paper"`` (E6): ``mean_ID mask*||g|| + mean_OOD mask*||g||``, ``g`` each row's gradient of the
    masked SUM of energies (``mask_i * grad_x E_i`` without coupling between rows). ``"reference"``: the authors'
    code (github.com/o4lc/Greg-OOD): the row gradients of ``-mean_ID relu(m_in - E) + mean_OOD relu(E - m_out)``,
    their norms averaged over all N rows, strict masks; "paper" / N exactly without BatchNorm coupling (no BN, or
    eval mode) or when n_id = n_ood, close to it otherwise (docs/method.md, section 5; chapter 03, appendix A, measures it).
    ``penalize="all"``: the ablation, every row penalised. ``return_norms``: also the per-row gradient norms.

    Returns the penalty (a scalar, or ``(M,)``) in energy units per input unit: one
    ``torch.autograd.grad(..., create_graph=True)`` on the existing graph, no second forward (M members: of the sum
    of their targets, their inputs being disjoint). With BatchNorm in train mode a row's gradient includes the other
    rows' influence through the batch statistics (under "reference" exactly as the authors' code has it)."""
    if not isinstance(inputs, torch.Tensor) or not inputs.requires_grad:
        raise ValueError("inputs must be a tensor with requires_grad=True, and the energies must be computed "
                         "from it: x = x.requires_grad_(); energies = energy(model(x))")
    members = _members("energies", energies, (1, 2))
    if tuple(energies.shape) != tuple(inputs.shape[:energies.ndim]):
        raise ValueError(f"energies must have shape {tuple(inputs.shape[:energies.ndim])} (one per row of inputs "
                         f"{tuple(inputs.shape)}), got {tuple(energies.shape)}")
    n_id = _check_choices(convention, penalize, n_id, energies.shape[-1])
    m_in, m_out = _columns(*_margins(m_in, m_out, members), energies)
    _check_finite("energies", energies)
    if not energies.requires_grad:
        raise ValueError("energies carry no gradient: compute them from inputs in the same graph (x.requires_grad_(); "
                         "energies = energy(model(x))), not under torch.no_grad() / inference_mode() or detached")
    e_id, e_ood = _split(energies, n_id, members)
    mask_id, mask_ood = _masks(e_id, e_ood, m_in, m_out, convention, penalize)
    if convention == "paper":
        target = (mask_id * e_id).sum(-1) + (mask_ood * e_ood).sum(-1)
    elif penalize == "all":
        target = e_id.mean(-1) + e_ood.mean(-1)
    else:
        target = -F.relu(m_in - e_id).mean(-1) + F.relu(e_ood - m_out).mean(-1)
    (grad,) = torch.autograd.grad(target if members is None else target.sum(), inputs, create_graph=True,
                                  allow_unused=True)
    if grad is None:
        raise ValueError("energies were not computed from inputs (no graph path from inputs to energies): pass the "
                         "tensor the model ran on, x.requires_grad_(); energies = energy(model(x))")
    norms = grad.flatten(energies.ndim).norm(dim=-1)
    if convention == "paper":
        norms_id, norms_ood = _split(norms, n_id, members)
        penalty = norms_id.mean(-1) + norms_ood.mean(-1)
    else:
        penalty = norms.mean(-1)
    return (penalty, norms.detach()) if return_norms else penalty


def _penalty_parts(energies, n_id, m_in, m_out, norms, convention, penalize, members) -> dict[str, torch.Tensor]:
    """:func:`penalty_logs` as tensors: scalars, or ``(M,)`` (margins as :func:`_columns` gives them)."""
    mask_id, mask_ood = _masks(*_split(energies, n_id, members), m_in, m_out, convention, penalize)
    if norms is None:
        g_id = g_ood = torch.zeros_like(mask_id[..., 0])
    elif convention == "paper":
        g_id, g_ood = (part.mean(-1) for part in _split(norms, n_id, members))
    else:
        g_id, g_ood = (part.sum(-1) / norms.shape[-1] for part in _split(norms, n_id, members))
    return {"masked_id": mask_id.mean(-1), "masked_ood": mask_ood.mean(-1), "loss_grad_id": g_id, "loss_grad_ood": g_ood}


def _logs(parts: dict[str, torch.Tensor]) -> dict:  # floats for one model, detached (M,) tensors for members
    return {k: v.item() if v.ndim == 0 else v.detach() for k, v in parts.items()}


@torch.no_grad()
def penalty_logs(energies: torch.Tensor, n_id: int, m_in, m_out, norms: torch.Tensor | None = None, *,
                 convention: str = "paper", penalize: str = "correct") -> dict:
    """What the gradient penalty (E6) acted on in one batch, for the step logs: ``energies`` ``(N,)`` (``(M, N)``),
    ID rows first, the other arguments as for :func:`greg_penalty`; ``norms`` the per-row gradient norms it returned,
    or None on a step without the term. Returns floats (``(M,)`` tensors for M members): ``masked_id`` /
    ``masked_ood``, the share of ID / outlier rows the mask selects (``E <= m_in`` / ``E >= m_out``, strict under
    "reference", every row under ``penalize="all"``), logged with or without the term (the share it *would* act
    on); ``loss_grad_id`` / ``loss_grad_ood``, the penalty's ID and outlier parts (0 without the term), which add up
    to it (paper: the two means of (E6); reference: each part's sum of norms / N). With BatchNorm in train mode an
    unmasked row's gradient need not be zero (rows are coupled): a part can be non-zero with no row of it masked."""
    members = _members("energies", energies, (1, 2))
    if norms is not None and (not isinstance(norms, torch.Tensor) or norms.shape != energies.shape):
        raise ValueError(f"norms must have the energies' shape {tuple(energies.shape)} or be None, got "
                         f"{getattr(norms, 'shape', type(norms).__name__)}")
    n_id = _check_choices(convention, penalize, n_id, energies.shape[-1])
    m_in, m_out = _columns(*_margins(m_in, m_out, members), energies)
    return _logs(_penalty_parts(energies, n_id, m_in, m_out, norms, convention, penalize, members))


def _batch(x_id: torch.Tensor, y_id: torch.Tensor, x_ood: torch.Tensor | None) -> int | None:
    """Check an objective's batch: None for one model's ``(B, ...)``, M for M members' ``(M, B, ...)``."""
    _labels("y_id", y_id)
    members, lead = _members("y_id", y_id, (1, 2)), y_id.ndim - 1
    for name, x in (("x_id", x_id), ("x_ood", x_ood)):
        if x is not None and not (isinstance(x, torch.Tensor) and x.ndim > lead + 1 and x.shape[:lead] == y_id.shape[:lead]
                                  and x.shape[lead] > 0 and (name == "x_ood" or x.shape[lead] == y_id.shape[-1])):
            raise ValueError(f"x_id and y_id must have the same length, x_id and x_ood be non-empty batches matching "
                             f"y_id {tuple(y_id.shape)}; got {name} {getattr(x, 'shape', type(x).__name__)}")
    return members


def _forward(model: nn.Module, x_id, x_ood, members, lambda_grad) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over ``[ID rows; outlier rows]``: its input (recording its gradient when a weight is on) and logits."""
    x = torch.cat([x_id, x_ood], 0 if members is None else 1)
    x = x if _all(lambda_grad == 0) else x.detach().requires_grad_(True)
    return x, model(x)


def _finish(parts: dict, logits_id, y_id, lambda_grad, extra: dict) -> dict:
    """The step logs: ``parts``, the training accuracy, ``extra``; the gradient term's at 0 where its weight is 0."""
    parts = {**parts, "train_acc": (logits_id.argmax(-1) == y_id).float().mean(-1), **extra}
    if isinstance(lambda_grad, torch.Tensor):
        on = lambda_grad.to(logits_id.device) != 0
        parts.update({k: torch.where(on, parts[k], 0.0) for k in ("loss_grad", "loss_grad_id", "loss_grad_ood")
                      if k in parts})
    return _logs(parts)


def _gradient_term(total, x, e, n_id, m_in, m_out, lambda_grad, convention, penalize, members):
    """``total + lambda_grad * L_grad`` (E6), the penalty ``L_grad`` (0 where off) and its :func:`penalty_logs`."""
    l_g, norms = torch.zeros_like(total), None
    if not _all(lambda_grad == 0):
        l_g, norms = greg_penalty(x, e, n_id, m_in, m_out, convention=convention, penalize=penalize, return_norms=True)
        total = total + _cast(lambda_grad, l_g) * l_g
    with torch.no_grad():
        return total, l_g, _penalty_parts(e, n_id, *_columns(m_in, m_out, e), norms, convention, penalize, members)


def ce_objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The cross-entropy step (E3): ``(loss, parts)``, ``loss_ce`` and ``train_acc`` (floats; ``(M,)`` for members)."""
    _batch(x, y, None)
    ce = ce_loss(logits := model(x), y)
    with torch.no_grad():
        return ce, _finish({"loss_ce": ce}, logits, y, None, {})


def oe_objective(model: nn.Module, x_id: torch.Tensor, y_id: torch.Tensor, x_ood: torch.Tensor, *,
                 lambda_oe=0.5, lambda_grad=0.0, m_in=None, m_out=None, convention: str = "paper",
                 penalize: str = "correct", temperature=1.0):
    """Outlier Exposure's loss for one batch, ``CE + lambda_oe * L_OE`` (:func:`oe_loss`), one forward over
    ``[x_id; x_ood]``. Given margins, plus GReg's gradient term (E6) weighted ``lambda_grad`` ("oe+grad", this
    collection's construction): the energies only choose which rows the penalty flattens. Returns ``(total, parts)``
    as :func:`greg_objective`: ``loss_ce``, ``loss_oe``, ``train_acc`` and, with margins, ``loss_grad`` and
    :func:`penalty_logs`' keys."""
    members = _batch(x_id, y_id, x_ood)
    lambda_oe, lambda_grad = (_setting(k, w, members, low=0.0) for k, w in (("lambda_oe", lambda_oe),
                                                                                ("lambda_grad", lambda_grad)))
    masked = m_in is not None or m_out is not None
    if masked:
        _check_choices(convention, penalize)
        m_in, m_out = _margins(m_in, m_out, members)
    elif not _all(lambda_grad == 0):
        raise ValueError("the gradient term needs the margins m_in and m_out (its masks)" + _HINT)
    n_id = y_id.shape[-1]
    x, logits = _forward(model, x_id, x_ood, members, lambda_grad)
    ce = ce_loss(_split(logits, n_id, members)[0], y_id)
    oe = oe_loss(_split(logits, n_id, members)[1])
    total = ce + _cast(lambda_oe, oe) * oe
    parts, extra = {"loss_ce": ce, "loss_oe": oe}, {}
    if masked:
        e = member_energy(logits, temperature)
        total, parts["loss_grad"], extra = _gradient_term(total, x, e, n_id, m_in, m_out, lambda_grad, convention,
                                                          penalize, members)
    with torch.no_grad():
        return total, _finish(parts, _split(logits, n_id, members)[0], y_id, lambda_grad, extra)


def greg_objective(model: nn.Module, x_id: torch.Tensor, y_id: torch.Tensor, x_ood: torch.Tensor, *,
                   m_in, m_out, lambda_s=0.1, lambda_grad=1.0, convention: str = "paper", penalize: str = "correct",
                   temperature=1.0):
    """The total loss (E7) for one batch: ``CE + lambda_s * L_S + lambda_grad * L_grad``, one forward pass over
    ``[x_id; x_ood]`` (BatchNorm sees both parts, as in the authors' code). With ``lambda_grad == 0``: the energy loss
    of Liu et al., no input gradient built. M members: ``x_id (M, B, ...)``, ``y_id (M, B)``, ``x_ood (M, A, ...)``.

    Returns ``(total, parts)``: the loss (a scalar, or ``(M,)``) and, for logging, floats (``(M,)`` tensors):
    ``loss_ce``, ``loss_energy``, ``loss_grad`` (the penalty before its weight; 0 when ``lambda_grad == 0``),
    ``past_m_in`` / ``past_m_out`` (share of ID rows with ``E <= m_in``, of outlier rows with ``E >= m_out``),
    ``train_acc``, and :func:`penalty_logs`' ``masked_id``, ``masked_ood``, ``loss_grad_id``, ``loss_grad_ood``."""
    members = _batch(x_id, y_id, x_ood)
    _check_choices(convention, penalize)
    m_in, m_out = _margins(m_in, m_out, members)
    lambda_s, lambda_grad = (_setting(k, w, members, low=0.0) for k, w in (("lambda_s", lambda_s),
                                                                              ("lambda_grad", lambda_grad)))
    n_id = y_id.shape[-1]
    x, logits = _forward(model, x_id, x_ood, members, lambda_grad)
    e = member_energy(logits, temperature)
    _check_finite("energies", e)
    ce = ce_loss(_split(logits, n_id, members)[0], y_id)
    l_s = energy_margin_loss(*_split(e, n_id, members), m_in, m_out)
    total, l_g, extra = _gradient_term(ce + _cast(lambda_s, l_s) * l_s, x, e, n_id, m_in, m_out, lambda_grad,
                                       convention, penalize, members)
    with torch.no_grad():
        (e_id, e_ood), (mi, mo) = _split(e, n_id, members), _columns(m_in, m_out, e)
        parts = {"loss_ce": ce, "loss_energy": l_s, "loss_grad": l_g, "past_m_in": (e_id <= mi).float().mean(-1),
                 "past_m_out": (e_ood >= mo).float().mean(-1)}
        return total, _finish(parts, _split(logits, n_id, members)[0], y_id, lambda_grad, extra)


@torch.no_grad()
def propose_margins(model: nn.Module, id_x: torch.Tensor, aux_x: torch.Tensor, *, temperature: float = 1.0,
                    max_samples: int = 4000) -> tuple[float, float]:
    """Margins ``(m_in, m_out)`` that fit a trained (e.g. cross-entropy) model, following the energy paper author's
    advice (in its code's issue tracker): put them near the model's mean ID and mean outlier energies.

    ``m_in = mean E(ID)``; ``m_out = max(mean E(aux), m_in + max(2, 2 * std E(ID)))``. The second term keeps a gap
    when the model gives outliers *lower* energy than ID data (a ReLU network far from its data does), where the
    plain advice would put ``m_out`` below ``m_in``. The published CIFAR margins, GReg's ``(-25, -7)``
    (:data:`GREG_CIFAR_MARGINS`) and the energy paper's ``(-23, -5)`` (:data:`ENERGY_CIFAR10_MARGINS`), were chosen
    for large CIFAR networks, not the small models here."""
    energies = []
    for name, x in (("id_x", id_x), ("aux_x", aux_x)):
        x = torch.as_tensor(x)[:max_samples]
        if len(x) == 0:
            raise ValueError(f"{name} is empty; propose_margins needs ID and auxiliary samples")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN/inf values; fix the data (the margins would be NaN)")
        energies.append(e := energy(predict_logits(model, x), temperature).double())
        if not torch.isfinite(e).all():
            raise ValueError(f"the model gives non-finite energies on {name} (its logits overflow or it holds "
                             f"NaN weights); check the model before proposing margins")
    m_in = energies[0].mean().item()
    return float(m_in), float(max(energies[1].mean().item(), m_in + max(2.0, 2.0 * energies[0].std().item())))
