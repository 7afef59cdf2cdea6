"""The registered methods' training steps for M stacked members at once (see :mod:`gregnb.train.batched`).

Each function mirrors its single-model step in :mod:`gregnb.train.methods` and :func:`gregnb.losses.greg_objective`
on inputs ``x (M, B, ...)``, ``y (M, B)``, ``x_aux (M, A, ...)``: every loss is computed per member and the
returned total is their sum (members share no parameter, so each member's gradient is its own). Per-member
settings come as tensors in :class:`MemberSettings`. Logs are ``(M,)`` tensors, one value per member, with the
keys (and order) of the single-model step. Equation labels such as (E6) refer to docs/method.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import TrainConfig

__all__ = ["MemberSettings", "STEPS", "grad_weights"]


@dataclass
class MemberSettings:
    """The per-member settings of a group, as tensors on the device (one entry per member)."""

    cfgs: list[TrainConfig]
    m_in: torch.Tensor  # (M, 1)
    m_out: torch.Tensor  # (M, 1)
    lambda_s: torch.Tensor  # (M,)
    lambda_oe: torch.Tensor  # (M,)
    temperature: torch.Tensor  # (M, 1)
    paper: torch.Tensor  # (M,) bool: convention "paper" (else "reference")
    every: torch.Tensor  # (M,) bool: penalize "all" (else "correct")

    @classmethod
    def of(cls, cfgs: list[TrainConfig], dev: torch.device) -> "MemberSettings":
        def col(name, default=0.0):
            return torch.tensor([float(getattr(c, name) if getattr(c, name) is not None else default) for c in cfgs],
                                device=dev)
        return cls(cfgs, col("m_in").unsqueeze(1), col("m_out", 1.0).unsqueeze(1), col("lambda_s"), col("lambda_oe"),
                   col("temperature").unsqueeze(1), torch.tensor([c.convention == "paper" for c in cfgs], device=dev),
                   torch.tensor([c.penalize == "all" for c in cfgs], device=dev))


def grad_weights(cfgs: list[TrainConfig], step: int) -> list[float]:
    """Each member's gradient-term weight at ``step`` (lazy regularisation as in :mod:`gregnb.train.methods`;
    the "energy" method never has one)."""
    return [0.0 if c.method == "energy" else (c.lambda_grad * c.grad_every if step % c.grad_every == 0 else 0.0)
            for c in cfgs]


def _energy(logits: torch.Tensor, s: MemberSettings) -> torch.Tensor:
    """``(M, N)`` energies at each member's temperature (as :func:`gregnb.scores.energy`)."""
    t = s.temperature
    return -t * torch.logsumexp(logits / t.unsqueeze(-1), dim=-1)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-member mean cross-entropy ``(M,)`` of logits ``(M, B, K)``."""
    m, b = y.shape
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(m, b).mean(1)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).float().mean(1)


def _oe(logits_ood: torch.Tensor) -> torch.Tensor:
    return (torch.logsumexp(logits_ood, dim=-1) - logits_ood.mean(dim=-1)).mean(1)


def _check_finite(e: torch.Tensor, s: MemberSettings) -> None:
    bad = (~torch.isfinite(e)).any(1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"energies contain NaN/inf values (member {i}, seed {s.cfgs[i].seed}, method "
                         f"{s.cfgs[i].method!r}); check the inputs and the learning rate")


def _masks(e: torch.Tensor, n: int, s: MemberSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's penalty masks ``(M, n)`` and ``(M, N - n)`` (as :func:`gregnb.losses.greg_penalty`'s)."""
    ed = e.detach()
    ones_id, ones_ood = torch.ones_like(ed[:, :n]), torch.ones_like(ed[:, n:])
    paper, every = s.paper.unsqueeze(1), s.every.unsqueeze(1)
    mask_id = torch.where(every, ones_id, torch.where(paper, ed[:, :n] <= s.m_in, ed[:, :n] < s.m_in).to(ed.dtype))
    mask_ood = torch.where(every, ones_ood, torch.where(paper, ed[:, n:] >= s.m_out, ed[:, n:] > s.m_out).to(ed.dtype))
    return mask_id, mask_ood


def _penalty_logs(e: torch.Tensor, n: int, s: MemberSettings, norms: torch.Tensor | None,
                  w: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`gregnb.losses.penalty_logs` per member: the masked shares, and the penalty's ID and outlier parts
    (0 for a member without the term at this step)."""
    mask_id, mask_ood = _masks(e, n, s)
    zero = torch.zeros_like(mask_id[:, 0])
    if norms is None:
        g_id = g_ood = zero
    else:
        big_n = norms.shape[1]
        g_id = torch.where(s.paper, norms[:, :n].mean(1), norms[:, :n].sum(1) / big_n)
        g_ood = torch.where(s.paper, norms[:, n:].mean(1), norms[:, n:].sum(1) / big_n)
        g_id, g_ood = torch.where(w != 0, g_id, zero), torch.where(w != 0, g_ood, zero)
    return {"masked_id": mask_id.mean(1), "masked_ood": mask_ood.mean(1), "loss_grad_id": g_id, "loss_grad_ood": g_ood}


def _penalty(inputs: torch.Tensor, e: torch.Tensor, n: int, s: MemberSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's GReg penalty (E6) ``(M,)``, in its own convention and masks (as
    :func:`gregnb.losses.greg_penalty`), and the per-row gradient norms ``(M, N)`` (detached); one autograd.grad
    for all members (their inputs are disjoint)."""
    mask_id, mask_ood = _masks(e, n, s)
    t_paper = (mask_id * e[:, :n]).sum(1) + (mask_ood * e[:, n:]).sum(1)
    t_ref = torch.where(s.every, e[:, :n].mean(1) + e[:, n:].mean(1),
                        -F.relu(s.m_in - e[:, :n]).mean(1) + F.relu(e[:, n:] - s.m_out).mean(1))
    (grad,) = torch.autograd.grad(torch.where(s.paper, t_paper, t_ref).sum(), inputs, create_graph=True)
    norms = grad.flatten(2).norm(dim=2)
    return torch.where(s.paper, norms[:, :n].mean(1) + norms[:, n:].mean(1), norms.mean(1)), norms.detach()


def _ce_step(net, x, y, x_aux, s, w):
    logits = net(x)
    ce = _ce(logits, y)
    return ce, {"loss_ce": ce.detach(), "train_acc": _acc(logits, y)}, None


def _oe_step(net, x, y, x_aux, s, w):
    n = x.shape[1]
    logits = net(torch.cat([x, x_aux], 1))
    ce, oe = _ce(logits[:, :n], y), _oe(logits[:, n:])
    logs = {"loss_ce": ce.detach(), "loss_oe": oe.detach(), "train_acc": _acc(logits[:, :n], y)}
    return ce + s.lambda_oe * oe, logs, None


def _joint_inputs(x, x_aux, w):
    """ID and outlier rows of each member in one batch ``(M, B + A, ...)``, a leaf that records input gradients
    when any member's gradient weight is non-zero (a group's members agree on that); and whether it does."""
    inputs = torch.cat([x, x_aux], 1)
    use_grad = bool((w != 0).any())
    return (inputs.detach().requires_grad_(True) if use_grad else inputs), use_grad


def _greg_objective(net, x, y, x_ood, s, w):
    """CE + lambda_s L_S + w L_grad per member (:func:`gregnb.losses.greg_objective`); the gradient term is built
    when any member's weight is non-zero (a group's members agree on that)."""
    n = x.shape[1]
    inputs, use_grad = _joint_inputs(x, x_ood, w)
    logits = net(inputs)
    e = _energy(logits, s)
    _check_finite(e, s)
    ce = _ce(logits[:, :n], y)
    l_s = F.relu(e[:, :n] - s.m_in).pow(2).mean(1) + F.relu(s.m_out - e[:, n:]).pow(2).mean(1)
    total = ce + s.lambda_s * l_s
    l_g, norms = torch.zeros_like(ce), None
    if use_grad:
        l_g, norms = _penalty(inputs, e, n, s)
        total = total + w * l_g
    with torch.no_grad():
        ed = e.detach()
        logs = {"loss_ce": ce.detach(), "loss_energy": l_s.detach(),
                "loss_grad": torch.where(w != 0, l_g.detach(), 0.0),
                "past_m_in": (ed[:, :n] <= s.m_in).float().mean(1),
                "past_m_out": (ed[:, n:] >= s.m_out).float().mean(1), "train_acc": _acc(logits[:, :n].detach(), y),
                **_penalty_logs(ed, n, s, norms, w)}
    return total, logs


def _greg_step(net, x, y, x_aux, s, w):
    total, logs = _greg_objective(net, x, y, x_aux, s, w)
    return total, logs, None


def _oe_grad_step(net, x, y, x_aux, s, w):
    n = x.shape[1]
    inputs, use_grad = _joint_inputs(x, x_aux, w)
    logits = net(inputs)
    ce, oe = _ce(logits[:, :n], y), _oe(logits[:, n:])
    loss = ce + s.lambda_oe * oe
    g, norms = torch.zeros_like(ce), None
    e = _energy(logits, s)
    if use_grad:
        g, norms = _penalty(inputs, e, n, s)
        loss = loss + w * g
    with torch.no_grad():
        logs = {"loss_ce": ce.detach(), "loss_oe": oe.detach(), "loss_grad": torch.where(w != 0, g.detach(), 0.0),
                "train_acc": _acc(logits[:, :n].detach(), y), **_penalty_logs(e.detach(), n, s, norms, w)}
    return loss, logs, None


def _gregplus_step(net, x, y, candidates, s, w, step):
    """Score every member's candidates in eval mode at once, let each member's sampler pick (its own
    generator, seeded as in the single-model step), then one GReg step for all."""
    n = x.shape[1]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            logits, feats = net(candidates, return_features=True)
            e = _energy(logits, s)
    finally:
        net.train(was_training)
    picks = []
    for i, cfg in enumerate(s.cfgs):
        plan = cfg.plan_selection(n, candidates.shape[1])
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        picks.append(plan.select(feats[i], e[i], generator=gen))
    if len({len(p) for p in picks}) != 1:
        raise ValueError("members of one batched group must pick equally many outliers; group them by their plan")
    idx = torch.stack(picks)
    x_ood = torch.gather(candidates, 1, idx.view(*idx.shape, *([1] * (candidates.ndim - 2))).expand(
        *idx.shape, *candidates.shape[2:]))
    total, logs = _greg_objective(net, x, y, x_ood, s, w)
    logs.update(picked_energy=torch.gather(e, 1, idx).mean(1), candidate_energy=e.mean(1),
                candidates=torch.full_like(e[:, 0], float(candidates.shape[1])),
                picks=torch.full_like(e[:, 0], float(idx.shape[1])))
    return total, logs, idx


#: method -> batched step ``(net, x, y, x_aux, settings, weights[, step]) -> (per-member loss, logs, picks)``
STEPS = {"ce": _ce_step, "oe": _oe_step, "energy": _greg_step, "greg": _greg_step, "oe+grad": _oe_grad_step,
         "greg+": _gregplus_step}
