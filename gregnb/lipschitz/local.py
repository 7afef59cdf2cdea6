"""Input gradients and local Lipschitz estimates of the energy (lower bounds, not guarantees)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import validate
from ..inference import as_model_input, eval_mode
from ..scores import energy

__all__ = ["input_gradient_norm", "local_lipschitz"]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _number(name: str, v, *, low: float = 0.0, above: bool = True, whole: bool = False, optional: bool = False):
    """``v`` checked: a finite number (a whole one if ``whole``) > ``low`` (>= if not ``above``); None if optional.
    Any number type passes (a 0-d tensor, a NumPy scalar): :mod:`gregnb.validate`."""
    if whole:
        return validate.whole(name, v, int(low) + 1 if above else int(low), optional=optional)
    return validate.number(name, v, low=None if low == -math.inf else low, low_open=above, optional=optional)


def _score(model: nn.Module, x: torch.Tensor, score: str, temperature: float) -> torch.Tensor:
    logits = model(x)
    return energy(logits, temperature) if score == "energy" else logits.amax(dim=1)


def input_gradient_norm(model: nn.Module, x: torch.Tensor, score: str = "energy", *, temperature: float = 1.0,
                        batch_size: int = 1024) -> torch.Tensor:
    """Per-sample ``||grad_x S(x_i)||_2`` in eval mode (no coupling between samples), on the CPU.

    Args:
        x: ``(N, ...)`` inputs in the space the model sees (gradients, and so radii, live there).
        score: ``"energy"`` (E, LOW = ID) or ``"max_logit"``.

    Returns:
        ``(N,)`` float tensor of gradient norms, in score units per input unit.
    """
    if score not in ("energy", "max_logit"):
        raise ValueError(f"score must be 'energy' or 'max_logit', got {score!r}")
    x = as_model_input(x, model)
    batch_size = _number("batch_size", batch_size, whole=True)
    dev = _device(model)
    out = []
    with eval_mode(model), validate.gradients():  # works inside a caller's no_grad() / inference_mode() too
        for i in range(0, len(x), batch_size):
            xb = validate.gradient_input(x[i:i + batch_size].to(dev).detach()).requires_grad_(True)
            (g,) = torch.autograd.grad(_score(model, xb, score, temperature).sum(), xb)  # rows independent in eval
            out.append(g.flatten(1).norm(dim=1).detach().cpu())
    return torch.cat(out)


def _project(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Project each row of ``delta`` onto the ℓ2 ball of radius ``eps`` (per row)."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * _rows(torch.clamp(eps / norms, max=1.0), delta)


def _eps_per_sample(eps, n: int) -> torch.Tensor:
    """``eps`` (a number or one per sample) as a float tensor of shape ``(n,)``; checked."""
    try:
        eps_t = torch.as_tensor(validate.scalar(eps), dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError):
        eps_t = None
    if eps_t is not None and eps_t.numel() == 1:
        eps_t = eps_t.expand(n)
    if isinstance(eps, (str, bool)) or eps_t is None or len(eps_t) != n or (eps_t < 0).any() \
            or not torch.isfinite(eps_t).all():
        raise ValueError(f"eps must be a non-negative finite number or one per sample ({n}), got "
                         f"{validate.describe(eps)}; pass a radius such as 0.1")
    return eps_t


def _rows(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample ``(N,)`` tensor shaped to broadcast over ``like``'s rows ``(N, ...)``."""
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def _unit_rows(g: torch.Tensor) -> torch.Tensor:
    """Each row of ``g`` scaled to unit ℓ2 norm (the normalised-gradient step of ℓ2 PGD)."""
    return g / _rows(g.flatten(1).norm(dim=1).clamp_min(1e-12), g)


def _step_sizes(step_size: float | None, eps: torch.Tensor, steps: int, like: torch.Tensor) -> torch.Tensor:
    """PGD step size per sample: ``step_size`` if given, else 2.5 eps / steps (enough to reach the
    boundary of the ball and move along it)."""
    a = torch.full_like(eps, step_size) if step_size is not None else 2.5 * eps / max(steps, 1)
    return _rows(a.to(like.dtype), like)


def _random_in_ball(shape, eps: torch.Tensor, gen: torch.Generator, device) -> torch.Tensor:
    """Uniform samples in the ℓ2 ball of radius eps (per row)."""
    n, d = shape[0], int(math.prod(shape[1:]))
    v = torch.randn(n, d, generator=gen).to(device)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    r = torch.rand(n, 1, generator=gen).to(device) ** (1.0 / d)
    return (v * r * eps.view(-1, 1)).view(shape)


def local_lipschitz(model: nn.Module, x: torch.Tensor, eps: float | torch.Tensor, *, method: str = "pgd",
                    steps: int = 20, n: int = 64, step_size: float | None = None, temperature: float = 1.0,
                    seed: int = 0) -> torch.Tensor:
    """Per-sample lower bound of the local Lipschitz constant ``sup_{||u - x|| <= eps} ||grad E(u)||``.

    ``method="pgd"``: projected gradient *ascent* on ``||grad E(u)||`` (a double backward), starting
    from ``x`` plus a small random offset; ``method="sample"``: ``n`` uniform points in the ball.
    Both include the centre, so the result is always >= :func:`input_gradient_norm` at ``x``.
    Eval mode; returns ``(N,)`` on the CPU.
    """
    if method not in ("pgd", "sample"):
        raise ValueError(f"method must be 'pgd' or 'sample', got {method!r}")
    x = as_model_input(x, model)
    steps, n = _number("steps", steps, whole=True), _number("n", n, whole=True)
    step_size, seed = _number("step_size", step_size, optional=True), _number("seed", seed, above=False, whole=True)
    eps_t = _eps_per_sample(eps, len(x))
    best = input_gradient_norm(model, x, temperature=temperature)
    if float(eps_t.max()) == 0.0:
        return best
    with eval_mode(model), validate.gradients():  # the double backward needs a graph, also under no_grad()
        dev = _device(model)
        gen = torch.Generator().manual_seed(seed)
        x0 = validate.gradient_input(x.to(dev).detach())
        e = eps_t.to(dev)
        if method == "sample":
            for _ in range(n):
                u = x0 + _random_in_ball(x0.shape, e, gen, dev)
                best = torch.maximum(best, input_gradient_norm(model, u.cpu(), temperature=temperature))
            return best
        alpha = _step_sizes(step_size, e, steps, x0)
        delta = _random_in_ball(x0.shape, e * 0.1, gen, dev)
        for _ in range(steps):
            delta = delta.detach().requires_grad_(True)
            u = x0 + delta
            (g,) = torch.autograd.grad(_score(model, u, "energy", temperature).sum(), u, create_graph=True)
            gnorm = g.flatten(1).norm(dim=1)
            best = torch.maximum(best, gnorm.detach().cpu())
            (ascent,) = torch.autograd.grad(gnorm.sum(), delta)
            delta = _project(delta.detach() + alpha * _unit_rows(ascent), e)
        final = input_gradient_norm(model, (x0 + delta).cpu(), temperature=temperature)
        return torch.maximum(best, final)


# ---------------------------------------------------------------- global bound
