"""Sound bounds on the logits and on the energy over a ball, and the sound radius they certify.

Conventions: the energy is ``E(x) = -T LSE(f(x) / T)`` (LOW = ID); a sample is accepted as ID when
``E <= threshold``. Balls are ℓ2 (``norm="l2"``) in the space the model sees (pixels in [0, 1] for
digits), or boxes ``|x - x0|_inf <= eps`` (``norm="linf"``, used by the grid certifier).

From logit bounds to energy bounds (``g(z) = T LSE(z / T)``, so ``E = -g(f(x))``). ``g`` is increasing
in every logit and convex, with gradient ``softmax(z / T)``; hence, over the ball,

* upper bounds of ``g`` (so lower bounds of E, which certify OOD decisions): ``g(f) <= g(u)`` with
  ``u`` the logits' interval upper bounds; and ``g(f) = f_j + g(f - f_j) <= u_j + g(D)`` for the top
  class ``j`` at the centre, ``D_k`` CROWN's upper bound of the *difference* ``f_k - f_j`` (differences
  keep the logits' correlation, which separate per-logit bounds throw away);
* lower bounds of ``g`` (upper bounds of E, which certify ID decisions): ``g(f) >= g(l)``, ``g(f) >= l_j``
  (``g >= max_k f_k``), and, by convexity, the tangent ``g(f) >= g(z0) + p0 . (f - z0)`` at the centre's
  logits ``z0`` with ``p0 = softmax(z0 / T)``, where CROWN bounds the *single* linear objective ``p0 . f``
  from below: exact to first order at the centre, and far tighter than bounding each logit alone.

Every combination is sound, so the best of them is taken. "ibp" uses the interval pair only.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import validate
from .graph import _DTYPE, build_graph, run_graph
from .propagate import InputSet, backward_lower, propagate

__all__ = ["logit_bounds", "energy_bounds", "BOUND_METHODS"]

#: radius methods, loosest first (named apart from the training methods, gregnb.train.METHODS)
BOUND_METHODS = ("global", "ibp", "crown", "grid")


def _as_x(x) -> torch.Tensor:
    """``x`` as a tensor (a NumPy array or a list of numbers converted), checked: ``(N, *input_shape)``, N >= 1,
    real, finite, holding values."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"x must be a tensor (or an array) of shape (N, *input_shape), got "
                             f"{validate.describe(x)}") from None
    if x.ndim < 2 or len(x) == 0 or x.device.type == "meta" or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"x must be a non-empty real tensor of shape (N, *input_shape) holding values, got "
                         f"{x.dtype} of shape {tuple(x.shape)} on {x.device}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    return x


def _inputs(model: nn.Module, x, eps, norm: str):
    validate.module("model", model)
    x = _as_x(x)
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
    try:
        eps_t = torch.as_tensor(validate.scalar(eps), dtype=_DTYPE).flatten()
    except (TypeError, ValueError, RuntimeError):
        eps_t = None
    if eps_t is not None and eps_t.numel() == 1:
        eps_t = eps_t.expand(len(x))
    if isinstance(eps, (str, bool)) or eps_t is None or len(eps_t) != len(x) or not torch.isfinite(eps_t).all() \
            or (eps_t < 0).any():
        raise ValueError(f"eps must be a finite number >= 0, or one per sample ({len(x)}), got "
                         f"{validate.describe(eps)}; pass a radius such as 0.1")
    return x.detach().cpu().to(_DTYPE), eps_t.clone()


def _graph(model: nn.Module, x: torch.Tensor) -> list:
    """:func:`build_graph` for ``x``'s sample shape; a shape the model cannot take is reported as such."""
    try:
        ops = build_graph(model, tuple(x.shape[1:]))
        run_graph(ops, torch.zeros(1, *x.shape[1:], dtype=_DTYPE))  # one sample through: the shapes fit
        return ops
    except RuntimeError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"the model cannot take samples of shape {tuple(x.shape[1:])} ({first}); pass x of shape "
                         f"(N, *input_shape) with the input shape it was built for") from err


def _settings(temperature, batch_size) -> tuple[float, int]:
    """``temperature`` (> 0) and ``batch_size`` (>= 1), checked (any number type)."""
    return (validate.number("temperature", temperature, low=0.0, low_open=True, hint="the paper uses 1"),
            validate.whole("batch_size", batch_size))


def _check_method(method: str, allowed=BOUND_METHODS[:3]) -> None:
    if method not in allowed:
        raise ValueError(f"method must be one of {allowed}, got {method!r}")


def _check_intermediate(intermediate: str) -> None:
    if intermediate not in ("ibp", "symbolic", "backward"):
        raise ValueError(f"intermediate must be 'ibp', 'symbolic' or 'backward', got {intermediate!r}")


def _logits(ops, inp: InputSet, method: str, intermediate: str):
    """(pre-activation bounds, logit lower, logit upper) by IBP or CROWN."""
    if method == "ibp":
        return propagate(ops, inp, "ibp")
    pre, _, _ = propagate(ops, inp, intermediate)
    k = ops[-1].out_shape[0]
    eye = torch.eye(k, dtype=_DTYPE).expand(len(inp.x0), k, k)
    low = backward_lower(ops, len(ops) - 1, torch.cat([eye, -eye], 1), inp, pre)
    return pre, low[:, :k], -low[:, k:]


def _lse(z: torch.Tensor, t: float) -> torch.Tensor:
    return t * torch.logsumexp(z / t, dim=1)


def _crown_rows(ops, inp: InputSet, t: float, intermediate: str, side: str = "both"):
    """CROWN on the objectives that the energy bounds need. Returns ``(a, b, z0, g_box)``: row ``r``'s lower
    bound over the ball of radius ``e <= inp.eps`` is ``a[:, r] - e * b[:, r]``. Rows (``j`` the top
    class at the centre): for the energy's upper bound ("upper"): ``p0 . f``, ``f_j``; for its lower
    bound ("lower"): ``-f_j``, ``f_j - f_k`` (K); "both": all of them (NaN columns for a missing side).
    ``z0``: the centre's logits ``(B, K)``; ``g_box``: ``(g(l), g(u))`` from the logits' interval bounds."""
    pre, l, u = propagate(ops, inp, intermediate)
    z0 = run_graph(ops, inp.x0)
    n, k = z0.shape
    eye = torch.eye(k, dtype=_DTYPE)
    top = eye[z0.argmax(1)]  # (n, K): e_j
    rows = []
    if side in ("upper", "both"):
        rows += [torch.softmax(z0 / t, dim=1)[:, None, :], top[:, None, :]]
    if side in ("lower", "both"):
        rows += [-top[:, None, :], top[:, None, :] - eye[None]]
    a, b = backward_lower(ops, len(ops) - 1, torch.cat(rows, 1), inp, pre, pieces=True)
    nan = torch.full((n, 2 if side == "lower" else k + 1), math.nan, dtype=_DTYPE)
    if side == "upper":
        a, b = torch.cat([a, nan], 1), torch.cat([b, nan], 1)
    elif side == "lower":
        a, b = torch.cat([nan, a], 1), torch.cat([nan, b], 1)
    return a, b, z0, (_lse(l, t), _lse(u, t))


def _energy_from_rows(a, b, z0, eps: torch.Tensor, t: float, g_box=None):
    """(lower, upper) of E from :func:`_crown_rows`' pieces at radius ``eps`` (``(B,)``); see the module
    docstring. ``lower = -(u_j + g(D))`` with ``D_k >= f_k - f_j``; ``upper = -max(g(z0) + p0 . (f - z0), l_j)``
    (``g >= max_k f_k >= f_j``). NaN where the side was not computed. ``g_box``: ``(g(l), g(u))`` from the
    interval logit bounds on the ball the pieces came from: constants valid for every smaller radius."""
    low = a - eps[:, None] * b
    lin, l_j, u_j, dmax = low[:, 0], low[:, 1], -low[:, 2], -low[:, 3:]
    p0 = torch.softmax(z0 / t, dim=1)
    g_low = torch.maximum(_lse(z0, t) + lin - (p0 * z0).sum(1), l_j)
    g_up = u_j + _lse(dmax, t)
    if g_box is not None:
        g_low, g_up = torch.fmax(g_low, g_box[0]), torch.fmin(g_up, g_box[1])
    return -g_up, -g_low


def _energy_chunk(ops, inp: InputSet, method: str, t: float, intermediate: str):
    """(lower, upper) of E over each sample's set, for "ibp" or "crown"."""
    if method == "ibp":
        _, l, u = propagate(ops, inp, "ibp")
        return -_lse(u, t), -_lse(l, t)
    a, b, z0, g_box = _crown_rows(ops, inp, t, intermediate)
    return _energy_from_rows(a, b, z0, inp.eps, t, g_box)


def _global_constant(model: nn.Module, in_shape) -> float:
    from ..lipschitz import global_lipschitz_bound

    return float(global_lipschitz_bound(model, tuple(in_shape)))


def _chunks(n: int, size: int):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _eval(model: nn.Module):
    was = model.training
    model.eval()
    return was


def logit_bounds(model: nn.Module, x: torch.Tensor, eps, method: str = "crown", *, norm: str = "l2",
                 intermediate: str = "symbolic", batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound per-logit bounds ``l <= f(x') <= u`` for every ``x'`` in the ball ``B_eps(x)``.

    Args:
        x: ``(N, *input_shape)`` centres; eps: a radius or one per sample (input units).
        method: "ibp" or "crown" (see :mod:`gregnb.certify.propagate`).
        intermediate: for "crown", how the inputs of ReLUs and max-pools are bounded: "symbolic"
            (forward linear bounds, fast; the default), "backward" (full CROWN, one backward pass per
            neuron: tighter, far slower on CNNs) or "ibp" (intervals: fastest, loosest).
    Returns ``(l, u)``, each ``(N, K)`` float64, in logit units. The model is left in its mode.
    """
    _check_method(method, ("ibp", "crown"))
    _check_intermediate(intermediate)
    _, batch_size = _settings(1.0, batch_size)
    x = _as_x(x)
    x64, eps_t = _inputs(model, x, eps, norm)
    was = _eval(model)
    try:
        ops = _graph(model, x)
        out = [_logits(ops, InputSet(x64[s], eps_t[s], norm), method, intermediate)[1:]
               for s in _chunks(len(x), batch_size)]
    finally:
        model.train(was)
    return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])


def energy_bounds(model: nn.Module, x: torch.Tensor, eps, method: str = "crown", *, temperature: float = 1.0,
                  norm: str = "l2", intermediate: str = "symbolic", batch_size: int = 32,
                  _ops=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound bounds ``lower <= E(x') <= upper`` on the energy over each ball ``B_eps(x_i)``.

    Methods: "global" (``E(x) ± L eps`` with ``L`` the product of the layers' spectral norms, see
    :func:`gregnb.lipschitz.global_lipschitz_bound`), "ibp" (interval bounds, exact ℓ2 first layer,
    BatchNorm folded), "crown" (linear relaxation bounds propagated backwards; the tightest).
    "global" and "ibp" are monotone in eps (a larger ball never gets a tighter bound); for "crown" see
    :func:`sound_radius`. ``intermediate``: as in :func:`logit_bounds`. ``norm="linf"`` bounds over the box
    ``|x' - x|_inf <= eps`` instead. Returns ``(lower, upper)``, each ``(N,)`` float64, energy units.
    """
    _check_method(method)
    _check_intermediate(intermediate)
    temperature, batch_size = _settings(temperature, batch_size)
    x = _as_x(x)
    x64, eps_t = _inputs(model, x, eps, norm)
    was = _eval(model)
    try:
        ops = _ops if _ops is not None else _graph(model, x)
        if method == "global":
            lip = _global_constant(model, x.shape[1:])
            e0 = -_lse(run_graph(ops, x64), temperature)
            r = eps_t * (1.0 if norm == "l2" else math.sqrt(x[0].numel()))
            return e0 - lip * r, e0 + lip * r
        out = [_energy_chunk(ops, InputSet(x64[s], eps_t[s], norm), method, temperature, intermediate)
               for s in _chunks(len(x), batch_size)]
    finally:
        model.train(was)
    return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])
