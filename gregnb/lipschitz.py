"""Lipschitz continuity of the score and certified radii (method.md E8, E9).

Conventions: the score is the energy ``E`` (LOW = ID); the decision is ID when ``E <= threshold``.
Distances are Euclidean (ℓ2) in the space the model sees (for images: pixel space, [0, 1]).

* :func:`input_gradient_norm` - ``||grad_x E(x)||`` per sample: the first-order local slope, a lower
  bound on the local Lipschitz constant, exact inside one linear region of a piecewise-linear score.
* :func:`local_lipschitz` - a better lower bound of ``sup_{u in B_eps(x)} ||grad E(u)||`` found by
  projected gradient ascent or by sampling. It is an *estimate*: not a guarantee.
* :func:`global_lipschitz_bound` - a guaranteed upper bound for the whole input space: the product
  of the layers' spectral norms (LSE is 1-Lipschitz in ℓ2). Sound but loose.
* :func:`certified_radius` - (E8): ``min(eps, |threshold - E(x)| / L)``.
* :func:`score_attack`, :func:`attack_radius` - PGD in the ℓ2 ball that pushes the energy across the
  threshold, and the smallest radius at which it succeeds (an upper bound on the true radius).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .inference import as_model_input
from .inference import eval_mode
from .scores import energy

__all__ = ["input_gradient_norm", "local_lipschitz", "global_lipschitz_bound", "certified_radius",
           "score_attack", "attack_radius", "certified_fraction", "SUPPORTED_LAYERS"]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _number(name: str, v, *, low: float = 0.0, above: bool = True, whole: bool = False, optional: bool = False):
    """``v`` checked: a finite number (a whole one if ``whole``) > ``low`` (>= if not ``above``); None if optional."""
    if v is None and optional:
        return None
    kind = numbers.Integral if whole else numbers.Real
    ok = not isinstance(v, bool) and isinstance(v, kind) and math.isfinite(v) and (v > low if above else v >= low)
    if not ok:
        what = "a whole number" if whole else "a finite number"
        bound = "" if low == -math.inf else f" {'>' if above else '>='} {low:g}"
        raise ValueError(f"{name} must be {what}{bound}, got {v!r}")
    return int(v) if whole else float(v)


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
    with eval_mode(model), torch.enable_grad():  # works inside a caller's torch.no_grad() too
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(_score(model, xb, score, temperature).sum(), xb)  # rows independent in eval
            out.append(g.flatten(1).norm(dim=1).detach().cpu())
    return torch.cat(out)


def _project(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Project each row of ``delta`` onto the ℓ2 ball of radius ``eps`` (per row)."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * _rows(torch.clamp(eps / norms, max=1.0), delta)


def _eps_per_sample(eps, n: int) -> torch.Tensor:
    """``eps`` (a number or one per sample) as a float tensor of shape ``(n,)``; checked."""
    eps_t = torch.as_tensor(eps, dtype=torch.float32).flatten()
    if eps_t.numel() == 1:
        eps_t = eps_t.expand(n)
    if len(eps_t) != n or (eps_t < 0).any() or not torch.isfinite(eps_t).all():
        raise ValueError("eps must be a non-negative finite number or one per sample")
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
    step_size = _number("step_size", step_size, optional=True)
    eps_t = _eps_per_sample(eps, len(x))
    best = input_gradient_norm(model, x, temperature=temperature)
    if float(eps_t.max()) == 0.0:
        return best
    was_training = model.training
    model.eval()
    grad_mode = torch.is_grad_enabled()
    torch.set_grad_enabled(True)  # the double backward needs a graph, also under a caller's torch.no_grad()
    dev = _device(model)
    gen = torch.Generator().manual_seed(seed)
    x0 = x.to(dev).detach()
    e = eps_t.to(dev)
    try:
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
    finally:
        torch.set_grad_enabled(grad_mode)
        model.train(was_training)


# ---------------------------------------------------------------- global bound

SUPPORTED_LAYERS = ("Linear", "Conv2d (any stride/padding, groups=1)", "BatchNorm1d/2d (eval, folded into the layer before)",
                    "ReLU, LeakyReLU(slope<=1), ELU(alpha<=1), Tanh, Softplus, Sigmoid (1-Lipschitz or less)",
                    "MaxPool2d with kernel_size == stride", "AvgPool2d with kernel_size == stride",
                    "AdaptiveAvgPool2d", "Flatten", "Identity, Dropout (eval)")

_ONE_LIPSCHITZ = (nn.ReLU, nn.Tanh, nn.Softplus, nn.Sigmoid, nn.Identity, nn.Flatten, nn.Dropout)


def _layers(model: nn.Module) -> list[nn.Module]:
    """The model's computation as a flat list of layers, for the models gregnb builds: a ``body``
    (Sequential) followed by ``fc``; or any plain nn.Sequential."""
    if isinstance(model, nn.Sequential):
        seq = list(model)
    elif hasattr(model, "body") and hasattr(model, "fc") and isinstance(model.body, nn.Sequential):
        seq = list(model.body) + [model.fc]
    else:
        raise ValueError(f"global_lipschitz_bound supports nn.Sequential models and gregnb's MLP / SmallCNN "
                         f"(a Sequential 'body' then 'fc'), not {type(model).__name__}; residual networks need "
                         f"a bound for each block")
    flat = []
    for m in seq:
        flat.extend(list(m) if isinstance(m, nn.Sequential) else [m])
    return flat


def _linear_operator(layer: nn.Module, bn: nn.Module | None):
    """(function v -> A v without bias, for v of the layer's input shape) with BatchNorm folded in."""
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    else:
        scale = None
    if isinstance(layer, nn.Linear):
        w = layer.weight.detach()
        if scale is not None:
            w = w * scale[:, None]
        return w
    w = layer.weight.detach()
    if scale is not None:
        w = w * scale[:, None, None, None]
    return lambda v: torch.nn.functional.conv2d(v, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def _spectral_norm_of(op, in_shape: tuple[int, ...], max_dense: int, iters: int, gen: torch.Generator) -> float:
    if torch.is_tensor(op):
        return float(torch.linalg.matrix_norm(op.double(), 2))
    d_in = int(math.prod(in_shape))
    with torch.no_grad():
        d_out = op(torch.zeros(1, *in_shape)).numel()
    if d_in * d_out <= max_dense:  # small: build the matrix column by column and take its exact norm
        cols = []
        eye = torch.eye(d_in)
        with torch.no_grad():
            for i in range(0, d_in, 512):
                cols.append(op(eye[i:i + 512].view(-1, *in_shape)).flatten(1))
        return float(torch.linalg.matrix_norm(torch.cat(cols).T.double(), 2))
    # large: power iteration on A^T A (adjoint by autograd); it converges from below, so add 1% slack
    v = torch.randn(1, *in_shape, generator=gen)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(iters):
        with torch.enable_grad():
            v.requires_grad_(True)
            av = op(v)
            (atav,) = torch.autograd.grad(av, v, av)
        new_sigma = float(atav.norm().sqrt())
        v = (atav / atav.norm()).detach()
        if abs(new_sigma - sigma) <= 1e-6 * new_sigma:
            sigma = new_sigma
            break
        sigma = new_sigma
    return sigma * 1.01


@torch.no_grad()
def global_lipschitz_bound(model: nn.Module, input_shape: tuple[int, ...] | None = None, *, max_dense: int = 2 ** 24,
                           iters: int = 500, return_factors: bool = False):
    """An upper bound on the ℓ2 Lipschitz constant of the energy ``E = -T LSE(f(x)/T)`` over all inputs.

    ``L_E <= L_f <= prod_layers ||layer||_2`` because LSE is 1-Lipschitz in ℓ2 (its gradient is a
    softmax vector, of norm <= 1), for any temperature. Linear and convolutional layers enter through
    their spectral norms as operators on the actual input shape (convolutions are *not* reshaped
    kernels): exact SVD of the explicit matrix when it has at most ``max_dense`` entries, power
    iteration (+1% slack, as it converges from below) otherwise. BatchNorm in eval mode is folded
    into the layer before it. Supported layers: see :data:`SUPPORTED_LAYERS`; anything else raises.

    Args:
        input_shape: one sample's shape; default from the model (``in_dim`` or ``(C, 8, 8)``).
        return_factors: also return the list of per-layer factors.
    """
    layers = _layers(model)
    if input_shape is None:
        if hasattr(model, "in_dim"):
            input_shape = (model.in_dim,)
        elif hasattr(model, "in_channels"):
            input_shape = (model.in_channels, 8, 8)
        else:
            raise ValueError("pass input_shape: the shape of one input sample")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(0)
    shape = tuple(input_shape)
    factors: list[tuple[str, float]] = []
    i = 0
    try:
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                    raise ValueError("grouped convolutions are not supported by global_lipschitz_bound")
                bn = nxt if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)) else None
                op = _linear_operator(layer, bn)
                factors.append((type(layer).__name__ + ("+BN" if bn is not None else ""),
                                _spectral_norm_of(op, shape, max_dense, iters, gen)))
                shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])
                i += 2 if bn is not None else 1
                continue
            if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):  # BN not after a linear layer
                scale = (layer.weight if layer.affine else 1.0) / torch.sqrt(layer.running_var + layer.eps)
                factors.append(("BatchNorm", float(torch.as_tensor(scale).abs().max())))
            elif isinstance(layer, _ONE_LIPSCHITZ):
                factors.append((type(layer).__name__, 1.0))
            elif isinstance(layer, nn.LeakyReLU) and layer.negative_slope <= 1:
                factors.append(("LeakyReLU", 1.0))
            elif isinstance(layer, nn.ELU) and layer.alpha <= 1:
                factors.append(("ELU", 1.0))
            elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
                k, s = layer.kernel_size, layer.stride
                if k != s:
                    raise ValueError(f"{type(layer).__name__} with overlapping windows (kernel {k}, stride {s}) "
                                     f"is not supported: its Lipschitz constant exceeds 1")
                kk = k * k if isinstance(k, int) else math.prod(k)
                # max-pool over disjoint windows is 1-Lipschitz; averaging kk values has norm 1/sqrt(kk)
                factors.append((type(layer).__name__, 1.0 if isinstance(layer, nn.MaxPool2d) else 1 / math.sqrt(kk)))
            elif isinstance(layer, nn.AdaptiveAvgPool2d):
                out = layer(torch.zeros(1, *shape)).shape[-2:]
                if shape[-2] % out[0] or shape[-1] % out[1]:
                    raise ValueError("AdaptiveAvgPool2d with uneven windows is not supported")
                factors.append(("AdaptiveAvgPool2d", 1 / math.sqrt((shape[-2] // out[0]) * (shape[-1] // out[1]))))
            else:
                raise ValueError(f"layer {type(layer).__name__} is not supported by global_lipschitz_bound; "
                                 f"supported: {', '.join(SUPPORTED_LAYERS)}")
            shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])
            i += 1
    finally:
        model.train(was_training)
    bound = float(math.prod(f for _, f in factors))
    return (bound, factors) if return_factors else bound


# ---------------------------------------------------------------- certificates and attacks

def certified_radius(energies: torch.Tensor, threshold: float, lipschitz: float | torch.Tensor,
                     eps: float | None = None) -> torch.Tensor:
    """(E8): the radius within which each sample's decision cannot change.

    A sample is ID when ``E <= threshold`` (LOW = ID), OOD otherwise. If the energy is
    ``L``-Lipschitz on the ball (``lipschitz``: one number, or one per sample), the decision holds for
    every ``x'`` with ``||x' - x|| < |threshold - E(x)| / L``; ``eps`` caps it (the ball the constant
    was computed on). A sample exactly at the threshold gets radius 0.

    Returns ``(N,)`` radii in input units (``inf`` where ``L == 0`` and no ``eps`` is given).
    """
    e = torch.as_tensor(energies, dtype=torch.float64).flatten()
    if len(e) == 0 or not torch.isfinite(e).all():
        raise ValueError("energies must be a non-empty collection of finite numbers")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    lip = torch.as_tensor(lipschitz, dtype=torch.float64).flatten()
    if lip.numel() not in (1, len(e)):
        raise ValueError(f"lipschitz must be one number or one per sample ({len(e)}), got {lip.numel()}")
    if (lip < 0).any() or not torch.isfinite(lip).all():
        raise ValueError("lipschitz constants must be finite and >= 0")
    margin = (float(threshold) - e).abs()
    radius = torch.where(lip > 0, margin / lip.clamp_min(1e-300), torch.full_like(margin, math.inf))
    radius = torch.where(margin == 0, torch.zeros_like(radius), radius)
    if eps is not None:
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        radius = radius.clamp_max(float(eps))
    return radius


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
    step_size = _number("step_size", step_size, optional=True)
    eps_t = _eps_per_sample(eps, len(x))
    sign = 1.0 if target == "ood" else -1.0  # maximise sign * E
    grad_mode = torch.is_grad_enabled()
    was_training = model.training
    model.eval()
    dev = _device(model)
    gen = torch.Generator().manual_seed(seed)
    x0 = x.to(dev).detach()
    e = eps_t.to(dev)
    alpha = _step_sizes(step_size, e, steps, x0)
    with torch.no_grad():
        best_x = x0.clone()
        best_obj = sign * energy(model(x0), temperature)
    try:
        torch.set_grad_enabled(True)  # restored below: gradients are needed under a caller's no_grad() too
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
    finally:
        torch.set_grad_enabled(grad_mode)
        model.train(was_training)
    return best_x.cpu(), (sign * best_obj).cpu()


def attack_radius(model: nn.Module, x: torch.Tensor, threshold: float, *, eps_max: float, steps: int = 30,
                  n_bisect: int = 7, temperature: float = 1.0) -> torch.Tensor:
    """The smallest ℓ2 radius (within ``eps_max``) at which :func:`score_attack` flips each sample's
    decision, by bisection; ``inf`` where even ``eps_max`` does not flip it. An *upper* bound on the
    true robust radius (a stronger attack could do better); any sound certificate must lie below it.
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
                _, e_adv = score_attack(model, x[mask], eps[mask], tgt, steps=steps, temperature=temperature)
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
                       lipschitz: str | float = "local", steps: int = 10, temperature: float = 1.0) -> torch.Tensor:
    """Certified detection curve: for each radius ``eps`` in ``eps_grid``, the fraction of ``x`` that is
    detected correctly (ID: ``E <= threshold`` if ``is_id``; OOD: ``E > threshold`` otherwise) *and*
    whose decision is certified within ``eps``: ``|threshold - E(x)| >= eps * L``.

    ``lipschitz="local"`` uses :func:`local_lipschitz` on each ``B_eps(x)`` (an estimate: the curve is
    then optimistic, not a guarantee); ``"global"`` uses :func:`global_lipschitz_bound` (sound); a
    number uses that constant. Returns ``(len(eps_grid),)`` fractions.
    """
    threshold = _number("threshold", threshold, low=-math.inf)
    if not isinstance(is_id, bool):
        raise ValueError(f"is_id must be True (x is ID data) or False (x is OOD data), got {is_id!r}")
    eps_list = torch.as_tensor(eps_grid, dtype=torch.float64).flatten().tolist()
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
