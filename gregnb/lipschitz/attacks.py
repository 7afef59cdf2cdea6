"""Attacks that push the energy across the threshold: upper bounds on the true robust radius."""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import validate
from ..inference import as_model_input, eval_mode
from ..scores import energy
from .bound import global_lipschitz_bound
from .local import (_device, _eps_per_sample, _number, _project, _random_in_ball, _step_sizes, _unit_rows,
                    local_lipschitz)

__all__ = ["score_attack", "attack_radius", "certified_fraction"]


def score_attack(model: nn.Module, x: torch.Tensor, eps: float | torch.Tensor, target: str = "ood", *,
                 steps: int = 50, step_size: float | None = None, temperature: float = 1.0,
                 restarts: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD in the ℓ2 ball of radius ``eps`` around each sample that pushes its energy across a threshold.

    ``target="ood"`` *raises* the energy (makes an ID sample look OOD); ``target="id"`` *lowers* it
    (makes an OOD sample look ID). Normalised-gradient steps of ``step_size`` (default 2.5 eps / steps),
    projection onto the ball after each step; the best point over all steps and ``restarts`` (each but
    the first from a random start) is kept. Eval mode.

    Returns ``(x_adv, energies_adv)`` on the CPU.
    """
    if target not in ("id", "ood"):
        raise ValueError(f"target must be 'id' or 'ood', got {target!r}")
    x = as_model_input(x, model)
    steps, restarts = _number("steps", steps, whole=True), _number("restarts", restarts, whole=True)
    step_size, seed = _number("step_size", step_size, optional=True), _number("seed", seed, above=False, whole=True)
    eps_t = _eps_per_sample(eps, len(x))
    sign = 1.0 if target == "ood" else -1.0  # maximise sign * E
    with eval_mode(model), validate.gradients():  # gradients are needed under a caller's no_grad() too
        dev = _device(model)
        gen = torch.Generator().manual_seed(seed)
        x0 = validate.gradient_input(x.to(dev).detach())
        e = eps_t.to(dev)
        alpha = _step_sizes(step_size, e, steps, x0)
        with torch.no_grad():
            best_x = x0.clone()
            best_obj = sign * energy(model(x0), temperature)
        for r in range(restarts):
            delta = torch.zeros_like(x0) if r == 0 else _random_in_ball(x0.shape, e, gen, dev)
            for _ in range(steps):
                delta = delta.detach().requires_grad_(True)
                obj = sign * energy(model(x0 + delta), temperature)
                (g,) = torch.autograd.grad(obj.sum(), delta)
                with torch.no_grad():
                    improved = obj > best_obj
                    best_obj = torch.where(improved, obj, best_obj)
                    best_x[improved] = (x0 + delta)[improved]
                    delta = _project(delta + alpha * _unit_rows(g), e)
            with torch.no_grad():
                obj = sign * energy(model(x0 + delta), temperature)
                improved = obj > best_obj
                best_obj = torch.where(improved, obj, best_obj)
                best_x[improved] = (x0 + delta)[improved]
    return best_x.cpu(), (sign * best_obj).cpu()


def attack_radius(model: nn.Module, x: torch.Tensor, threshold: float, *, eps_max: float, steps: int = 30,
                  n_bisect: int = 7, temperature: float = 1.0, restarts: int = 1, seed: int = 0) -> torch.Tensor:
    """The smallest ℓ2 radius (within ``eps_max``) at which :func:`score_attack` flips each sample's
    decision, by bisection; ``inf`` where even ``eps_max`` does not flip it. An *upper* bound on the
    true robust radius (a stronger attack could do better: more ``steps``, more ``restarts`` from random
    starts); any sound certificate must lie below it. Decisions are the model's own (its dtype:
    ``E <= threshold`` compared as the model computes ``E``).
    """
    threshold = _number("threshold", threshold, low=-math.inf)
    eps_max = _number("eps_max", eps_max)
    n_bisect = _number("n_bisect", n_bisect, above=False, whole=True)
    x = as_model_input(x, model)
    with torch.no_grad(), eval_mode(model):
        e0 = energy(model(x.to(_device(model))), temperature).cpu()
    is_id = e0 <= threshold
    target_ood = is_id  # ID samples are pushed up, OOD samples down

    def flips(eps: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), dtype=torch.bool)
        for mask, tgt in ((target_ood, "ood"), (~target_ood, "id")):
            if mask.any():
                _, e_adv = score_attack(model, x[mask], eps[mask], tgt, steps=steps, temperature=temperature,
                                        restarts=restarts, seed=seed)
                out[mask] = (e_adv > threshold) if tgt == "ood" else (e_adv <= threshold)
        return out

    lo = torch.zeros(len(x))
    hi = torch.full((len(x),), float(eps_max))
    ok = flips(hi)
    for _ in range(n_bisect):
        mid = (lo + hi) / 2
        f = flips(mid)
        hi = torch.where(f & ok, mid, hi)
        lo = torch.where(f & ok, lo, mid)
    return torch.where(ok, hi, torch.full_like(hi, math.inf))


def certified_fraction(model: nn.Module, x: torch.Tensor, threshold: float, eps_grid, *, is_id: bool,
                       lipschitz: str | float = "global", steps: int = 10, temperature: float = 1.0) -> torch.Tensor:
    """Certified detection curve: for each radius ``eps`` in ``eps_grid``, the fraction of ``x`` that is
    detected correctly (ID: ``E <= threshold`` if ``is_id``; OOD: ``E > threshold`` otherwise) *and*
    whose decision is certified within ``eps``: ``|threshold - E(x)| >= eps * L``.

    ``lipschitz="global"`` (the default) uses :func:`global_lipschitz_bound` (an upper bound: a certified
    curve); a number uses that constant (certified only if it is an upper bound); ``"local"`` uses
    :func:`local_lipschitz` on each ``B_eps(x)``, an *estimate*: the curve is then an optimistic estimate
    that certifies nothing. Returns ``(len(eps_grid),)`` fractions.
    """
    threshold, steps = _number("threshold", threshold, low=-math.inf), validate.whole("steps", steps)
    if not isinstance(validate.scalar(is_id), bool):
        raise ValueError(f"is_id must be True (x is ID data) or False (x is OOD data), got {validate.describe(is_id)}")
    is_id = validate.scalar(is_id)
    try:
        eps_list = torch.as_tensor(eps_grid, dtype=torch.float64).flatten().tolist()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"eps_grid must be a list of radii, e.g. [0.0, 0.1, 0.2], got "
                         f"{validate.describe(eps_grid)}") from None
    if not eps_list:
        raise ValueError("eps_grid is empty: pass the radii to certify, e.g. [0.0, 0.1, 0.2]")
    eps_list = [_number("each eps in eps_grid", eps, above=False) for eps in eps_list]
    if not isinstance(lipschitz, str):
        lipschitz = _number("lipschitz (a constant)", lipschitz, above=False)
    x = as_model_input(x, model)
    with torch.no_grad(), eval_mode(model):
        e = energy(model(x.to(_device(model))), temperature).double().cpu()
    correct = (e <= threshold) if is_id else (e > threshold)
    margin = (threshold - e).abs()
    if lipschitz == "global":
        lip_const = global_lipschitz_bound(model)
    elif isinstance(lipschitz, float):
        lip_const = lipschitz
    elif lipschitz != "local":
        raise ValueError(f"lipschitz must be 'local', 'global' or a number, got {lipschitz!r}")
    out = []
    for eps in eps_list:
        if lipschitz == "local":
            lip = local_lipschitz(model, x, float(eps), steps=steps, temperature=temperature).double()
        else:
            lip = torch.full_like(margin, lip_const)
        out.append((correct & (margin >= float(eps) * lip)).double().mean().item())
    return torch.tensor(out)
