"""Bound propagation through a graph of :mod:`gregnb.certify.graph` operations.

Three ways to bound every neuron over an input set (an ℓ2 ball or a box around each sample):

* **IBP** (interval bound propagation; Gowal et al. 2018): an interval ``[l, u]`` per neuron, pushed
  through ``W`` as centre ``W c + b`` and radius ``|W| r``, through ReLU / max-pool monotonically.
  The first layer is exact for the ℓ2 ball: ``W_i x`` ranges over ``W_i x0 ± eps ||W_i||_2``.
* **symbolic** (forward linear bounds): each neuron gets two *linear functions of the input*
  ``L(x) <= z(x) <= U(x)``, pushed forward with the ReLU's linear relaxation; exact through the
  first layer and much tighter than intervals when the input has few dimensions (64 pixels, 2 coordinates).
* **backward** (CROWN; Zhang et al. 2018): a linear objective ``lam . z`` at some layer is pulled back
  to the input through ``W^T`` and, at each ReLU, the lower line for positive and the upper line for
  negative coefficients; then minimised in closed form over the ball (``lam . x0 - eps ||lam||_2``).

ReLU relaxation of a neuron with pre-activation bounds ``l < 0 < u``: upper line
``relu(z) <= u (z - l) / (u - l)`` (the chord), lower line ``relu(z) >= a z`` with ``a = 1`` if
``u >= -l`` else ``0`` (CROWN's adaptive choice). Max-pool over a window: lower ``max_j z_j >= z_j*``
(``j*`` the largest lower bound), upper the constant ``max_j u_j`` (or ``z_j*`` itself when it dominates
the window: ``l_j* >= u_j`` for every other ``j``). Every bound here is sound for the whole set. Arithmetic
is float64, except the forward linear bounds (float32 for speed, each widened by more than its worst-case
rounding error: see ``_ROUNDING``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .graph import Affine, MaxPool, ReLU

__all__ = ["InputSet", "propagate", "backward_lower"]

#: float32 unit roundoff x 4 (safety): the forward linear bounds run in float32 for speed; each bound
#: they give is widened by ``_ROUNDING * (terms summed so far) * mag``, ``mag`` an upper bound of the
#: sum of |terms| (the forms' values propagated through ``|W|``, doubled at each ReLU for the chord's
#: intercept): more than the worst-case rounding error of float32 sums (Higham, *Accuracy and
#: Stability of Numerical Algorithms*, 2002, the inner-product bound of chapter 3), so the widened bounds
#: stay sound. All else is float64.
_ROUNDING = 4 * 2.0 ** -24


@dataclass
class InputSet:
    """For each sample b: ``{x : ||x - x0[b]||_2 <= eps[b]}`` (norm "l2") or the box
    ``{x : |x - x0[b]|_inf <= eps[b]}`` (norm "linf"). ``x0``: ``(B, *shape)``, ``eps``: ``(B,)``; float64."""

    x0: torch.Tensor
    eps: torch.Tensor
    norm: str = "l2"

    def dual(self, lam: torch.Tensor, dim: int) -> torch.Tensor:
        """The dual norm of ``lam`` over ``dim`` (ℓ2 for the ball, ℓ1 for the box)."""
        v = lam * lam if self.norm == "l2" else lam.abs()
        if dim == 1 and v.ndim == 3:  # (B, d, N): a matrix product is much faster than a strided reduction
            v = torch.matmul(torch.ones(1, v.shape[1], dtype=v.dtype), v)[:, 0]
        else:
            v = v.sum(dim=dim)
        return v.clamp_min(0).sqrt() if self.norm == "l2" else v

    def lower(self, lam: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
        """``min_x lam . x + const`` for ``lam`` of shape ``(B, R, *shape)``, ``const`` ``(B, R)``."""
        lam = lam.flatten(2)
        return const + torch.einsum("brd,bd->br", lam, self.x0.flatten(1)) - self.eps[:, None] * self.dual(lam, 2)


def _relu_lines(l: torch.Tensor, u: torch.Tensor):
    """(upper slope s, upper intercept t, lower slope a) with ``a z <= relu(z) <= s z + t`` on [l, u]."""
    active, unstable = l >= 0, (l < 0) & (u > 0)
    s = torch.where(unstable, u / (u - l).clamp_min(1e-300), active.to(l.dtype))
    t = torch.where(unstable, -s * l, torch.zeros_like(l))
    a = torch.where(unstable, (u >= -l).to(l.dtype), active.to(l.dtype))
    return s, t, a


def _pool_lines(op: MaxPool, l: torch.Tensor, u: torch.Tensor):
    """Per window: one-hot of ``j*`` (B, C, h, w, k*k), whether it dominates, and ``max_j u_j``."""
    lw, uw = op.windows(l), op.windows(u)
    jstar = lw.argmax(-1, keepdim=True)
    onehot = torch.zeros_like(lw).scatter_(-1, jstar, 1.0)
    others = uw.masked_fill(onehot.bool(), -torch.inf).amax(-1)
    dominant = lw.gather(-1, jstar)[..., 0] >= others
    return onehot, dominant, uw.amax(-1)


def backward_lower(ops: list, upto: int, lam: torch.Tensor, inp: InputSet, pre: dict, *, pieces: bool = False):
    """CROWN: a lower bound of ``lam . y`` over the input set, ``y`` the output of ``ops[upto]``.

    ``lam``: ``(B, R, *shape of y)`` (R objectives per sample); ``pre``: op index -> ``(l, u)``, the
    bounds of the *input* of every ReLU / MaxPool before ``upto``. Returns ``(B, R)``; with ``pieces``,
    ``(a, b)`` such that ``a - e * b`` is the lower bound over the ball of any radius ``e <= inp.eps``
    (the relaxations, valid on the larger ball, stay valid on every smaller one)."""
    b, r = lam.shape[:2]
    const = torch.zeros(b, r, dtype=lam.dtype)
    for i in range(upto, -1, -1):
        op = ops[i]
        if isinstance(op, Affine):
            const = const + (lam * op.bias).flatten(2).sum(2)
            lam = op.transpose(lam.reshape(b * r, *op.out_shape)).reshape(b, r, *op.in_shape)
        elif isinstance(op, ReLU):
            s, t, a = (v[:, None] for v in _relu_lines(*pre[i]))
            pos, neg = lam.clamp_min(0), lam.clamp_max(0)
            const = const + (neg * t).flatten(2).sum(2)
            lam = pos * a + neg * s
        else:
            onehot, dominant, umax = _pool_lines(op, *pre[i])
            pos, neg = lam.clamp_min(0), lam.clamp_max(0)
            const = const + (neg * (umax * ~dominant)[:, None]).flatten(2).sum(2)
            moved = pos + neg * dominant[:, None]  # coefficients that land on z_j*
            lam = op.unwindows((moved[..., None] * onehot[:, None]).reshape(b * r, *onehot.shape[1:]))
            lam = lam.reshape(b, r, *op.in_shape)
    if pieces:
        flat = lam.flatten(2)
        return const + torch.einsum("brd,bd->br", flat, inp.x0.flatten(1)), inp.dual(flat, 2)
    return inp.lower(lam, const)


def _affine_forms(op: Affine, lw, lc, uw, uc, exact: bool):
    """Push ``L <= v <= U`` (forms ``w . x + c``; ``w``: (B, d, *shape)) through ``W v + b`` (float32)."""
    b, d = lw.shape[:2]
    low = op.low

    def apply(fn, w, c, bias):
        return fn(w.reshape(b * d, *op.in_shape)).reshape(b, d, *op.out_shape), fn(c) + bias

    if exact:
        w, c = apply(low.fn, lw, lc, low.bias)
        return w, c, w, c
    mw, mc = apply(low.fn, (lw + uw) / 2, (lc + uc) / 2, low.bias)
    rw, rc = apply(low.fn_abs, (uw - lw) / 2, (uc - lc) / 2, 0.0)
    return mw - rw, mc - rc, mw + rw, mc + rc


def _concretize(inp: InputSet, w: torch.Tensor, c: torch.Tensor, sign: float) -> torch.Tensor:
    """min (sign=-1) or max (sign=+1) of the forms ``w . x + c`` over the input set: ``(B, *shape)``.
    ``w``: ``(B or 1, d, *shape)`` (coefficients of the d input coordinates), ``c``: ``(B, *shape)``."""
    flat = w.reshape(w.shape[0], w.shape[1], -1)
    x0 = inp.x0.flatten(1).to(flat.dtype)
    val = x0 @ flat[0] if w.shape[0] == 1 else torch.bmm(x0[:, None, :], flat)[:, 0]
    val = val.double() + sign * inp.eps[:, None] * inp.dual(flat, 1).double()
    return val.reshape(c.shape) + c.double()


def propagate(ops: list, inp: InputSet, mode: str = "ibp") -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Bounds of every ReLU / MaxPool input and of the logits over ``inp``.

    ``mode``: "ibp" (intervals only), "symbolic" (forward linear bounds, intersected with the intervals),
    "backward" (CROWN bounds for every intermediate neuron, intersected with the intervals: tightest,
    slowest: one backward pass per neuron). Returns ``(pre, l, u)``: ``pre`` maps the index of each
    ReLU / MaxPool to the ``(l, u)`` of its input, each ``(B, *shape)``; ``l, u`` the logits ``(B, K)``."""
    if mode not in ("ibp", "symbolic", "backward"):
        raise ValueError(f"mode must be 'ibp', 'symbolic' or 'backward', got {mode!r}")
    x0, n = inp.x0, len(inp.x0)
    first = ops[0]
    centre = first(x0)
    eps = inp.eps.view(-1, *([1] * (x0.ndim - 1)))
    rad = (inp.eps.view(-1, *([1] * len(first.out_shape))) * first.row_norms() if inp.norm == "l2"
           else first.fn_abs(eps.expand_as(x0)))
    l, u = centre - rad, centre + rad
    forms = None
    if mode == "symbolic":
        d = x0[0].numel()
        w = first.low.fn(torch.eye(d).view(d, *first.in_shape))[None]  # (1, d, *shape), float32
        c = first.low.bias.expand(n, *first.out_shape)
        forms, exact = [w, c, w, c], True
        mag = first.fn_abs(x0.abs() + eps) + first.bias.abs()  # bounds |every term| of the forms' sums
        terms = d + first.fan_in + 4
    pre = {}
    last = max([i for i, op in enumerate(ops) if not isinstance(op, Affine)], default=0)
    for i, op in enumerate(ops[1:], 1):
        if isinstance(op, Affine):
            mid, r = op((l + u) / 2), op.fn_abs((u - l) / 2)
            l, u = mid - r, mid + r
            if forms is not None and i < last:  # forms are only needed up to the last ReLU / MaxPool
                forms = list(_affine_forms(op, *forms, exact))
                mag, terms = op.fn_abs(mag) + op.bias.abs(), terms + op.fan_in + 4
            continue
        if forms is not None:  # tighten with the forward linear bounds, widened for float32 rounding
            pad = _ROUNDING * terms * mag
            l = torch.maximum(l, _concretize(inp, forms[0], forms[1], -1.0) - pad)
            u = torch.minimum(u, _concretize(inp, forms[2], forms[3], 1.0) + pad)
        elif mode == "backward":
            k = l[0].numel()
            eye = torch.eye(k, dtype=l.dtype).view(1, k, *l.shape[1:])
            lam = torch.cat([eye, -eye], 1).expand(n, 2 * k, *l.shape[1:])
            bnd = backward_lower(ops, i - 1, lam, inp, pre)
            l = torch.maximum(l, bnd[:, :k].view_as(l))
            u = torch.minimum(u, -bnd[:, k:].view_as(u))
        u = torch.maximum(u, l)  # guards against rounding when l == u
        pre[i] = (l, u)
        if isinstance(op, ReLU):
            if forms is not None:
                s, t, a = (v.float() for v in _relu_lines(l, u))
                lw, lc, uw, uc = forms
                forms, exact = [a[:, None] * lw, a * lc, s[:, None] * uw, s * uc + t], False
                mag, terms = 2 * mag, terms + 4  # the chord's intercept |t| <= |l| <= mag adds at most mag
            l, u = l.clamp_min(0), u.clamp_min(0)
        else:
            onehot, dominant, umax = _pool_lines(op, l, u)
            if forms is not None:
                forms, exact = _pool_forms(op, forms, onehot, dominant, umax.float()), False
                mag, terms = op.windows(mag).amax(-1), terms + 4
            l, u = (op.windows(l) * onehot).sum(-1), umax
    return pre, l, u


def _pool_forms(op: MaxPool, forms, onehot, dominant, umax):
    """Max-pool relaxation of the forms: lower ``z_j*``; upper ``z_j*`` where it dominates, else ``max u``."""
    lw, lc, uw, uc = forms
    c, h, w = op.in_shape
    # flat index (into C*H*W) of each window's j*, by pooling an index map the same way
    where = op.windows(torch.arange(c * h * w).view(1, c, h, w).expand(len(onehot), c, h, w))
    idx = (where * onehot.long()).sum(-1).flatten(1)  # (B, C*h*w)

    def pick(f):  # forms (B or 1, d, C, H, W) -> (B, d, C, h, w)
        flat = f.reshape(f.shape[0], f.shape[1], -1).expand(len(idx), -1, -1)
        return flat.gather(2, idx[:, None, :].expand(-1, flat.shape[1], -1)).view(len(idx), -1, *op.out_shape)

    def pick_c(v):  # offsets (B, C, H, W) -> (B, C, h, w)
        return v.reshape(len(idx), -1).gather(1, idx).view(len(idx), *op.out_shape)

    return [pick(lw), pick_c(lc), pick(uw) * dominant[:, None], torch.where(dominant, pick_c(uc), umax)]
