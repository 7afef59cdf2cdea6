"""The sound radius: the largest ball on which the bounds of :mod:`gregnb.certify.bounds` (or the 2-D grid
certifier) prove a detection decision."""
from __future__ import annotations


import torch
from torch import nn

from .. import validate
from .bounds import (BOUND_METHODS, _as_x, _check_intermediate, _check_method, _chunks, _crown_rows, _energy_chunk,
                     _energy_from_rows, _eval, _global_constant, _graph, _inputs, _lse, _settings)
from .graph import _DTYPE, run_graph
from .grid import grid_radius
from .propagate import InputSet
from .rounding import _U64, ROUNDING, decisions, margin_on, unit_roundoff

__all__ = ["sound_radius"]


def _correct_mask(decide_id: torch.Tensor, is_id) -> torch.Tensor:
    if is_id is None:
        return torch.ones_like(decide_id)
    v = validate.scalar(is_id)
    if isinstance(v, (str, float, int)) and not isinstance(v, bool):
        raise ValueError(f"is_id must be True, False, None or one bool per sample, got {validate.describe(is_id)}")
    truth = torch.as_tensor(is_id, dtype=torch.bool).flatten()
    if truth.numel() == 1:
        truth = truth.expand(len(decide_id))
    if len(truth) != len(decide_id):
        raise ValueError(f"is_id must be one bool or one per sample ({len(decide_id)}), got {len(truth)}")
    return decide_id == truth


def _search(certify, n: int, eps_max: float, todo: torch.Tensor, steps: int, rel_tol: float,
            start: torch.Tensor | None = None) -> torch.Tensor:
    """Bracket search for the largest certified radius of each sample in ``todo`` (indices).

    ``certify(eps, idx)`` returns, for the samples ``idx`` at radii ``eps``, a *verified* radius
    ``rho <= eps`` (``rho == eps`` when the ball of radius eps is certified). The best verified radius
    ``lo`` only grows; ``hi`` is the smallest radius seen not certified; the next try is their geometric
    mean, at most ``4 lo`` (or ``hi / 4`` while nothing is certified), until ``hi - lo <= rel_tol * hi`` or
    ``steps`` tries.
    ``start``: the first radius to try per sample (default ``eps_max``); any guess is safe."""
    lo = torch.zeros(n, dtype=_DTYPE)
    hi = torch.full((n,), float(eps_max), dtype=_DTYPE)
    eps = hi.clone() if start is None else start.to(_DTYPE).clamp(eps_max * 1e-6, eps_max)
    active = torch.zeros(n, dtype=torch.bool)
    active[todo] = True
    for _ in range(steps):
        idx = torch.nonzero(active).flatten()
        if len(idx) == 0:
            break
        rho = certify(eps[idx], idx)
        lo[idx] = torch.maximum(lo[idx], rho)
        hi[idx] = torch.where(rho >= eps[idx], hi[idx], eps[idx])
        active &= hi - lo > rel_tol * hi
        eps = torch.where(lo > 0, lo * torch.sqrt(hi / lo.clamp_min(1e-300)).clamp_max(4.0), hi / 4)
    return lo


def _proves(lo: torch.Tensor, hi: torch.Tensor, decide_id: torch.Tensor, threshold: float, tol: torch.Tensor):
    """Whether the bounds prove each decision with the safety margin ``tol`` (:mod:`.rounding`):
    ``hi <= threshold - tol`` (ID), ``lo > threshold + tol`` (OOD)."""
    return torch.where(decide_id, hi <= threshold - tol, lo > threshold + tol)


def _rows_radius(a, b, z0, eps, decide_id, threshold: float, t: float, g_box, tol: torch.Tensor,
                 iters: int = 50) -> torch.Tensor:
    """The largest ``e <= eps`` at which CROWN's linear pieces (valid for every radius up to ``eps``)
    prove the decision with margin ``tol``: closed-form bounds, bisected in ``e`` (monotone in ``e``)."""
    def ok(e):
        return _proves(*_energy_from_rows(a, b, z0, e, t, g_box), decide_id, threshold, tol)

    good, bad = torch.zeros_like(eps), eps.clone()
    full = ok(eps)
    for _ in range(iters):
        mid = (good + bad) / 2
        m = ok(mid)
        good, bad = torch.where(m, mid, good), torch.where(m, bad, mid)
    good = torch.where(ok(good), good, torch.zeros_like(good))  # e = 0 may fail too (relaxation slack)
    return torch.where(full, eps, good)


def _first_order_guess(model: nn.Module, x: torch.Tensor, margin: torch.Tensor, t: float):
    """``margin / ||grad E(x)||`` (``margin``: ``|threshold - E(x)| - tol``): where a first-order model says
    the decision flips. Sound radii are typically a few to ten times smaller; the search starts at an
    eighth of it (only a starting point: no guarantee either way)."""
    from ..lipschitz import input_gradient_norm

    g = input_gradient_norm(model, x, temperature=t).double()
    return margin.clamp_min(0) / g.clamp_min(1e-12)


def sound_radius(model: nn.Module, x: torch.Tensor, threshold: float, *, method: str = "crown", eps_max: float = 1.0,
                 is_id=None, temperature: float = 1.0, n_bisect: int = 12, rel_tol: float = 0.02,
                 intermediate: str = "symbolic", batch_size: int = 32, cell: float | None = None,
                 rounding: str = "worst-case") -> torch.Tensor:
    """The largest ℓ2 radius (up to ``eps_max``) within which the bounds *prove* each decision, including
    floating-point error.

    A sample is decided ID when the model's own energy (its float32 forward pass) is ``<= threshold``
    (LOW = ID). Its radius ``r`` satisfies: for every ``x'`` with ``||x' - x|| <= r``, the model's decision
    at ``x'`` is its decision at ``x`` (a certificate, not an estimate). With ``is_id`` (one bool, or one
    per sample: the truth), samples whose decision is wrong get radius 0 ("correctly detected and
    certified").

    Floating point: the bounds hold for the exact energy ``E`` of the model's graph (computed in float64);
    the model's float32 energy can differ from it by rounding. Every method therefore proves the decision
    with a safety margin ``tol`` (:func:`gregnb.certify.rounding.safety_margin`, a bound on that difference
    over the ball ``B_r(x)`` being certified, about ``4 u`` times the number of roundings times the largest logit magnitude,
    plus ``|threshold|`` rounded to float32; ``u = 2^-24``): ID needs ``upper <= threshold - tol``, OOD
    ``lower > threshold + tol``. A sample with ``|threshold - E(x)| <= tol`` (at ``x`` itself), or whose
    float32 and float64 decisions disagree, gets radius 0: rounding alone could flip it.

    "global": closed form ``(|threshold - E| - tol) / L`` (``tol`` over ``B_eps_max``, or over the smaller
    ball when that one checks out). "ibp" / "crown": a bracket search over the
    ball's radius (at most ``n_bisect`` bound computations per sample, stopping at relative width
    ``rel_tol``). Monotone-safe: the radius returned is always one at which the bounds were *checked* to
    prove the decision, and bounds over ``B_r`` cover every smaller ball, so the result is sound whether or
    not the bounds grow monotonically with the radius ("global" and "ibp" do: nested balls give nested
    intervals; CROWN's adaptive ReLU lines need not, which the search can only make it miss, never
    overstate). CROWN's linear pieces computed on ``B_eps`` stay valid on every smaller ball, so each
    CROWN call also certifies the largest radius ``<= eps`` those pieces prove.
    "grid" (2-D inputs only): :func:`gregnb.certify.grid.grid_radius`; ``cell`` is its finest cell.

    Returns ``(N,)`` float64 radii in input units.
    """
    _check_method(method, BOUND_METHODS)
    threshold = validate.number("threshold", threshold, hint="the energy threshold: ID when E <= threshold")
    eps_max = validate.number("eps_max", eps_max, low=0.0, low_open=True, hint="the largest radius looked at")
    n_bisect = validate.whole("n_bisect", n_bisect)
    rel_tol = validate.number("rel_tol", rel_tol, low=0.0, high=1.0, high_open=True, hint="e.g. 0.02")
    cell = validate.number("cell", cell, low=0.0, low_open=True, high=eps_max, optional=True)
    temperature, batch_size = _settings(temperature, batch_size)
    _check_intermediate(intermediate)
    if rounding not in ROUNDING:
        raise ValueError(f"rounding must be one of {ROUNDING}, got {rounding!r}")
    x = _as_x(x)
    x64, _ = _inputs(model, x, 0.0, "l2")
    was = _eval(model)
    try:
        ops = _graph(model, x)
        decide_id, tol0, safe = decisions(model, x, threshold, 0.0, temperature, ops, rounding=rounding)
        e0 = -_lse(run_graph(ops, x64), temperature)
        correct = _correct_mask(decide_id, is_id) & safe
        u = unit_roundoff(model) + _U64

        def tol(idx: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:  # the safety margin over B_eps
            return margin_on(ops, InputSet(x64[idx], eps, "l2"), threshold, temperature, u, rounding)

        if method == "grid":
            r = grid_radius(model, x, threshold, eps_max=eps_max, cell=cell, temperature=temperature, _ops=ops,
                            rounding=rounding)
        elif method == "global":
            lip, every = _global_constant(model, x.shape[1:]), torch.arange(len(x))
            r = torch.full_like(e0, float(eps_max))
            if lip > 0:  # sound with the margin over B_eps_max; then tried with the (smaller) one over B_r
                r = (((threshold - e0).abs() - tol(every, r)).clamp_min(0) / lip).clamp_max(eps_max)
                r2 = (((threshold - e0).abs() - tol(every, r)).clamp_min(0) / lip).clamp_max(eps_max)
                r = torch.where((threshold - e0).abs() - tol(every, r2) >= lip * r2, r2, r)
        else:
            def certify(eps: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
                out = []
                for s in _chunks(len(idx), batch_size):
                    inp, dec, tl = InputSet(x64[idx[s]], eps[s], "l2"), decide_id[idx[s]], tol(idx[s], eps[s])
                    if method == "ibp":
                        lo, hi = _energy_chunk(ops, inp, "ibp", temperature, intermediate)
                        ok = _proves(lo, hi, dec, threshold, tl)
                        out.append(torch.where(ok, eps[s], torch.zeros_like(eps[s])))
                    else:
                        side = "upper" if dec.all() else "lower" if not dec.any() else "both"
                        a, b, z0, g_box = _crown_rows(ops, inp, temperature, intermediate, side)
                        out.append(_rows_radius(a, b, z0, eps[s], dec, threshold, temperature, g_box, tl))
                return torch.cat(out)

            def grouped(eps: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:  # ID and OOD in separate chunks
                out = torch.empty(len(idx), dtype=_DTYPE)
                for mask in (decide_id[idx], ~decide_id[idx]):
                    if mask.any():
                        out[mask] = certify(eps[mask], idx[mask])
                return out

            guess = _first_order_guess(model, x, (threshold - e0).abs() - tol0, temperature) / 8
            r = _search(grouped, len(x), eps_max, torch.nonzero(correct).flatten(), n_bisect, rel_tol, guess)
    finally:
        model.train(was)
    return torch.where(correct, r, torch.zeros_like(r))
