"""The step functions of the registered methods: one training step's loss and logs.

* ``"ce"``: cross-entropy only (no outliers).
* ``"oe"``: Outlier Exposure, ``CE + lambda_oe * oe_loss`` (Hendrycks et al.; lambda_oe = 0.5).
* ``"energy"``: ``CE + lambda_s * L_S``, the energy margin loss (Liu et al.; lambda_s = 0.1).
* ``"greg"``: ``CE + lambda_s * L_S + lambda_grad * L_grad``, GReg (Sharifi et al.'s gradient-regularised loss).
* ``"oe+grad"``: Outlier Exposure plus GReg's masked gradient term (this collection's construction: the masks
  come from the energy margins).
* ``"greg+"``: GReg with energy-based sampling: each step draws ``candidate_factor`` x batch pool samples (the
  candidates), scores them in eval mode and trains on the strict subset a sampler picks (Algorithm 1 of the
  paper; :meth:`gregnb.train.TrainConfig.plan_selection`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..inference import eval_mode
from ..losses import greg_objective, greg_penalty, oe_loss, penalty_logs
from ..scores import energy
from .config import TrainConfig
from .registry import register_method

__all__: list[str] = []


def _ce_step(model, x, y, x_aux, cfg, step):
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    acc = (logits.argmax(1) == y).float().mean()
    return loss, {"loss_ce": loss.item(), "train_acc": acc.item()}


def _oe_step(model, x, y, x_aux, cfg, step):
    logits = model(torch.cat([x, x_aux]))
    n = len(x)
    ce = F.cross_entropy(logits[:n], y)
    oe = oe_loss(logits[n:])
    acc = (logits[:n].argmax(1) == y).float().mean()
    return ce + cfg.lambda_oe * oe, {"loss_ce": ce.item(), "loss_oe": oe.item(), "train_acc": acc.item()}


def _grad_weight(cfg: TrainConfig, step: int) -> float:
    """Lazy regularisation: the gradient term on every k-th step only, with weight k * lambda."""
    return cfg.lambda_grad * cfg.grad_every if step % cfg.grad_every == 0 else 0.0


def _energy_step(model, x, y, x_aux, cfg, step):
    """GReg's objective without the gradient term (its logs still say what share of rows a mask would select)."""
    return greg_objective(model, x, y, x_aux, m_in=cfg.m_in, m_out=cfg.m_out, lambda_s=cfg.lambda_s,
                          lambda_grad=0.0, convention=cfg.convention, penalize=cfg.penalize,
                          temperature=cfg.temperature)


def _greg_step(model, x, y, x_aux, cfg, step):
    return greg_objective(model, x, y, x_aux, m_in=cfg.m_in, m_out=cfg.m_out, lambda_s=cfg.lambda_s,
                          lambda_grad=_grad_weight(cfg, step), convention=cfg.convention,
                          penalize=cfg.penalize, temperature=cfg.temperature)


def _oe_grad_step(model, x, y, x_aux, cfg, step):
    """OE + GReg's gradient term: the energies only choose which rows are flattened."""
    n = len(x)
    weight = _grad_weight(cfg, step)
    inputs = torch.cat([x, x_aux])
    if weight:
        inputs = inputs.detach().requires_grad_(True)
    logits = model(inputs)
    ce = F.cross_entropy(logits[:n], y)
    oe = oe_loss(logits[n:])
    loss = ce + cfg.lambda_oe * oe
    g, norms = torch.zeros(()), None
    e = energy(logits, cfg.temperature)
    if weight:
        g, norms = greg_penalty(inputs, e, n, cfg.m_in, cfg.m_out, convention=cfg.convention, penalize=cfg.penalize,
                                return_norms=True)
        loss = loss + weight * g
    acc = (logits[:n].argmax(1) == y).float().mean()
    return loss, {"loss_ce": ce.item(), "loss_oe": oe.item(), "loss_grad": g.item(), "train_acc": acc.item(),
                  **penalty_logs(e.detach(), n, cfg.m_in, cfg.m_out, norms, convention=cfg.convention,
                                 penalize=cfg.penalize)}


def _gregplus_step(model, x, y, candidates, cfg, step):
    """Score the candidates in eval mode, let the sampler pick the OOD batch, then a GReg step."""
    plan = cfg.plan_selection(len(x), len(candidates))
    with eval_mode(model), torch.no_grad():
        logits, feats = model(candidates, return_features=True)
        e = energy(logits, cfg.temperature)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    idx = plan.select(feats, e, generator=gen)
    loss, logs = greg_objective(model, x, y, candidates[idx], m_in=cfg.m_in, m_out=cfg.m_out, lambda_s=cfg.lambda_s,
                                lambda_grad=_grad_weight(cfg, step), convention=cfg.convention,
                                penalize=cfg.penalize, temperature=cfg.temperature)
    logs.update(picked_energy=e[idx].mean().item(), candidate_energy=e.mean().item(),
                candidates=float(len(candidates)), picks=float(len(idx)), picked_index=idx)
    return loss, logs


register_method("ce", _ce_step, uses_aux=False)
register_method("oe", _oe_step, uses_aux=True)
register_method("energy", _energy_step, uses_aux=True, needs_margins=True)
register_method("greg", _greg_step, uses_aux=True, needs_margins=True)
register_method("oe+grad", _oe_grad_step, uses_aux=True, needs_margins=True)
register_method("greg+", _gregplus_step, uses_aux=True, needs_margins=True,
                aux_size=lambda cfg: cfg.plan_selection().n_candidates, check=TrainConfig.plan_selection)
