"""The step functions of the registered methods: one training step's loss and logs, for one model (:func:`fit`) and,
the same functions, for M stacked members (:func:`gregnb.train.fit_many`). The maths is :mod:`gregnb.losses`'.

* ``"ce"``: cross-entropy only (no outliers).
* ``"oe"``: Outlier Exposure, ``CE + lambda_oe * oe_loss`` (Hendrycks et al.; lambda_oe = 0.5).
* ``"energy"``: ``CE + lambda_s * L_S``, the energy margin loss (Liu et al.; lambda_s = 0.1).
* ``"greg"``: ``CE + lambda_s * L_S + lambda_grad * L_grad``, GReg (Sharifi et al.'s gradient-regularised loss).
* ``"oe+grad"``: Outlier Exposure plus GReg's masked gradient term (this collection's construction: the masks
  come from the energy margins).
* ``"greg+"``: GReg with energy-based sampling: each step draws ``candidate_factor`` x batch pool samples (the
  candidates), scores them in eval mode and trains on the strict subset a sampler picks (Algorithm 1 of the
  paper; :meth:`gregnb.train.TrainConfig.plan_selection`).

A step reads its settings from ``cfg``: a :class:`~gregnb.train.TrainConfig`, or for M stacked members a
:class:`~gregnb.train.batched_steps.MemberSettings` (the same names; per-member numbers as ``(M,)`` tensors). Inputs
then carry a leading member axis: ``x (M, B, ...)``, ``y (M, B)``, ``x_aux (M, A, ...)``.
"""
from __future__ import annotations

import torch

from ..inference import eval_mode
from ..losses import ce_objective, greg_objective, member_energy, oe_objective
from .config import TrainConfig
from .registry import register_method

__all__: list[str] = []


def _ce_step(model, x, y, x_aux, cfg, step):
    return ce_objective(model, x, y)


def _oe_step(model, x, y, x_aux, cfg, step):
    return oe_objective(model, x, y, x_aux, lambda_oe=cfg.lambda_oe)


def _grad_weight(cfg: TrainConfig, step: int):
    """Lazy regularisation: the gradient term on every k-th step only, with weight k * lambda."""
    return cfg.lambda_grad * cfg.grad_every if step % cfg.grad_every == 0 else 0.0


def _masks(cfg: TrainConfig) -> dict:
    """The settings of GReg's masks (and of the energies they read)."""
    return dict(m_in=cfg.m_in, m_out=cfg.m_out, convention=cfg.convention, penalize=cfg.penalize,
                temperature=cfg.temperature)


def _energy_step(model, x, y, x_aux, cfg, step):
    """GReg's objective without the gradient term (its logs still say what share of rows a mask would select)."""
    return greg_objective(model, x, y, x_aux, lambda_s=cfg.lambda_s, lambda_grad=0.0, **_masks(cfg))


def _greg_step(model, x, y, x_aux, cfg, step):
    return greg_objective(model, x, y, x_aux, lambda_s=cfg.lambda_s, lambda_grad=_grad_weight(cfg, step), **_masks(cfg))


def _oe_grad_step(model, x, y, x_aux, cfg, step):
    """OE + GReg's gradient term: the energies only choose which rows are flattened."""
    return oe_objective(model, x, y, x_aux, lambda_oe=cfg.lambda_oe, lambda_grad=_grad_weight(cfg, step), **_masks(cfg))


def _pick(cfg, feats: torch.Tensor, e: torch.Tensor, n_id: int, step: int) -> torch.Tensor:
    """The sampler's picks among the candidates (features ``(C, D)``, energies ``(C,)``): indices ``(P,)``; for M
    members (``(M, C, D)``, ``(M, C)``) ``(M, P)``, each member's own. A member's generator is seeded from its seed and
    the step, so its picks do not depend on what trains beside it."""
    plan = cfg.plan_selection(n_id, e.shape[-1])
    gen = lambda seed: torch.Generator().manual_seed(seed * 1_000_003 + step)  # noqa: E731
    if e.ndim == 1:
        return plan.select(feats, e, generator=gen(cfg.seed))
    return torch.stack([plan.select(f, en, generator=gen(s)) for f, en, s in zip(feats, e, cfg.seed)])


def _take(rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``rows[idx]``, for M members row by row: ``rows (M, C, ...)``, ``idx (M, P)`` -> ``(M, P, ...)``."""
    if idx.ndim == 1:
        return rows[idx]
    return torch.gather(rows, 1, idx.view(*idx.shape, *([1] * (rows.ndim - 2))).expand(*idx.shape, *rows.shape[2:]))


def _gregplus_step(model, x, y, candidates, cfg, step):
    """Score the candidates in eval mode, let the sampler pick the OOD batch, then a GReg step."""
    with eval_mode(model), torch.no_grad():
        logits, feats = model(candidates, return_features=True)
        e = member_energy(logits, cfg.temperature)
    idx = _pick(cfg, feats, e, y.shape[-1], step)
    loss, logs = greg_objective(model, x, y, _take(candidates, idx), lambda_s=cfg.lambda_s,
                                lambda_grad=_grad_weight(cfg, step), **_masks(cfg))
    extra = {"picked_energy": _take(e, idx).mean(-1), "candidate_energy": e.mean(-1),
             "candidates": torch.full_like(e[..., 0], e.shape[-1]), "picks": torch.full_like(e[..., 0], idx.shape[-1])}
    logs.update({k: v.item() if v.ndim == 0 else v for k, v in extra.items()}, picked_index=idx)
    return loss, logs


register_method("ce", _ce_step, uses_aux=False, stacks=True, cost=0.4)
register_method("oe", _oe_step, uses_aux=True, stacks=True)
register_method("energy", _energy_step, uses_aux=True, needs_margins=True, stacks=True)
register_method("greg", _greg_step, uses_aux=True, needs_margins=True, input_gradient=True, stacks=True)
register_method("oe+grad", _oe_grad_step, uses_aux=True, needs_margins=True, input_gradient=True, stacks=True)
register_method("greg+", _gregplus_step, uses_aux=True, needs_margins=True, input_gradient=True, stacks=True,
                cost=1.7, aux_size=lambda cfg: cfg.plan_selection().n_candidates, check=TrainConfig.plan_selection)
