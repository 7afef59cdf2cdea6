"""The safety margin of every sound radius: how far the model's own floating-point energy can be from
the exact energy that the bounds are about.

The bounds of :mod:`gregnb.certify` hold for the *exact* (real-number) energy ``E(x')`` of the model's
graph, and are computed in float64. The decision a reader sees is the model's own: its float32 forward
pass, ``E_f32(x') <= threshold``, compared in float32 (PyTorch rounds a Python threshold to the tensor's
dtype). The two differ by rounding, so a bound that proves ``E(x') <= threshold`` with nothing to spare
proves nothing about ``E_f32(x')`` (at margin 0 the old radius was about 1e-6, and rounding alone could flip
the decision inside it). :func:`safety_margin` bounds ``|E_f32(x') - E(x')|`` over the whole ball:

``tol = err + 4 u (5 top + T (K + 2 + 4 ln K)) + 4 u |threshold|``, with

* ``u`` the unit roundoff of the model's arithmetic (:func:`unit_roundoff`: ``2^-24`` for float32 on a
  CPU; ``2^-11`` for float32 on a GPU that allows TF32), plus float64's ``2^-53`` for the bounds' own;
* ``err`` the rounding error of the logits, carried layer by layer with interval bounds ``[l, h]`` of every
  neuron over the ball: a layer of fan-in ``n`` computes each output as a sum of ``n`` products plus a bias,
  off by at most ``gamma_n sum |terms|`` in any order of summation, ``gamma_n = n u / (1 - n u)`` (Higham,
  *Accuracy and Stability of Numerical Algorithms*, 2002, ch. 3), ``sum |terms| <= |W| max(|l|, |h|) +
  |bias terms|`` (a folded BatchNorm counts its scale and shift separately and adds 10 roundings); the
  error already present is carried through ``W``; ReLU and max-pooling do not increase it (1-Lipschitz);
  the energy ``-T LSE(z / T)`` moves by at most the largest logit error. Two ways to add the roundings up:

  - ``rounding="probabilistic"`` (opt-in, not a proof): rounding errors are independent with mean zero (the model
    of Higham & Mary, *A New Approach to Probabilistic Rounding Error Analysis*, SIAM J. Sci. Comput.
    2019); by Hoeffding's inequality a sum of such errors, each bounded by ``b_i``, exceeds
    ``LAMBDA sqrt(sum b_i^2)`` with probability at most ``2 exp(-LAMBDA^2 / 2)``: ``2.5e-14`` for
    ``LAMBDA = 8``. Squares propagate through ``W * W``: ``V <- (W*W) V + n u^2 (sum |terms|)^2``, and
    ``err = LAMBDA sqrt(V)``. On the chapters' networks this is 25 to 1000 times the largest error measured
    against a float64 copy of the model (``tests/test_certify_sound.py``).
  - ``rounding="worst-case"`` (the default: a certificate must be a proof): every rounding error at its
    bound, every sign aligned:
    ``D <- |W| D + 1.01 n u (sum |terms|)`` and ``err = 4 D``. A proof for every input and every order of
    summation, but 10 to 50 times larger again (1e-4 to 1e-2 energy units on small networks; 0.05 on a
    trained digits CNN, a tenth of a typical margin), so it eats visibly into the radii.
* ``4 u (5 top + T (K + 2 + 4 ln K))``: the float32 log-sum-exp itself (the division by ``T``, the shift
  by the maximum, ``K`` exponentials and their sum, the logarithm, the product by ``T``; ``top`` the
  largest ``|logit|`` over the ball), at its worst case with a safety factor of 4;
* ``4 u |threshold|``: the threshold rounded to float32 for the comparison.

A decision is certified on a ball only when the bounds keep ``tol`` from the threshold, and a point within
``tol`` of it (at the point itself) gets radius 0.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..inference import eval_mode
from ..scores import energy
from .graph import _DTYPE, Affine, MaxPool, build_graph, run_graph
from .propagate import InputSet

__all__ = ["safety_margin", "unit_roundoff", "model_energy", "decisions"]

_SAFETY = 4.0
#: how many "standard deviations" of the rounding error the probabilistic margin allows: by Hoeffding's
#: inequality a sum of independent mean-zero errors bounded by b_i exceeds LAMBDA sqrt(sum b_i^2) with
#: probability at most 2 exp(-LAMBDA^2 / 2) (2.5e-14 for 8)
LAMBDA = 8.0
#: the two models of rounding error (see :func:`evaluation_error`)
ROUNDING = ("probabilistic", "worst-case")
_U64 = 2.0 ** -53
_UNIT = {torch.float64: _U64, torch.float32: 2.0 ** -24, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def unit_roundoff(model: nn.Module) -> float:
    """The unit roundoff of the model's forward pass: from its weights' dtype (float32: ``2^-24``), or
    ``2^-11`` for float32 on CUDA when TF32 is allowed for matrix products or convolutions (PyTorch allows
    it for cuDNN convolutions by default)."""
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    if p is None:
        return _UNIT[torch.float32]
    u = _UNIT.get(p.dtype, _UNIT[torch.float32])
    if p.device.type == "cuda" and p.dtype == torch.float32 and (
            torch.backends.cudnn.allow_tf32 or torch.get_float32_matmul_precision() != "highest"):
        u = 2.0 ** -11
    return u


def evaluation_error(ops: list, inp: InputSet, temperature: float, u: float,
                     rounding: str = "worst-case") -> torch.Tensor:
    """A bound on ``|E_model(x') - E(x')|`` (before rounding the threshold) for every ``x'`` in each
    sample's set, for a model with unit roundoff ``u``; see the module docstring. ``(B,)`` float64.

    One pass carries, per neuron, interval bounds ``[l, h]`` of its exact value over the set (as IBP) and
    the model's rounding error there. ``rounding="worst-case"``: ``D <- |W| D + 1.01 n u (|W| m + |b|)``
    through a layer of fan-in ``n`` (``m = max(|l|, |h|)``), a bound for every order of summation.
    ``"probabilistic"``: ``V <- (W*W) V + n u^2 (|W| m + |b|)^2`` (sums of squares of the independent,
    mean-zero rounding errors' bounds), and the error is at most ``LAMBDA sqrt(V)``. Both are unchanged
    through ReLU and take the window maximum through max-pooling."""
    if rounding not in ROUNDING:
        raise ValueError(f"rounding must be one of {ROUNDING}, got {rounding!r}")
    worst = rounding == "worst-case"
    x0 = inp.x0
    box = inp.eps.view(-1, *([1] * (x0.ndim - 1)))
    big = x0.abs() + box  # |x'| <= |x0| + eps, coordinate-wise, on the ball and on the box
    err = u * big if worst else (u * big) ** 2  # the input, rounded to the model's dtype
    lo = hi = None
    for i, op in enumerate(ops):
        if isinstance(op, Affine):
            n = op.roundings if op.roundings is not None else op.fan_in + 2
            bias = op.bias_mag if op.bias_mag is not None else op.bias.abs()
            if i == 0:
                centre = op(x0)
                rad = (inp.eps.view(-1, *([1] * len(op.out_shape))) * op.row_norms() if inp.norm == "l2"
                       else op.fn_abs(box.expand_as(x0)))
                terms = op.fn_abs(x0.abs()) + rad  # ||x'| - |x0|| <= |x' - x0|, then Cauchy-Schwarz per row
            else:
                centre, rad = op((lo + hi) / 2), op.fn_abs((hi - lo) / 2)
                terms = op.fn_abs(torch.maximum(lo.abs(), hi.abs()))
            if worst:
                err = op.fn_abs(err) + 1.01 * n * u * (terms + bias)
            else:
                err = op.fn_sq(err).clamp_min(0) + n * (u * (terms + bias)) ** 2
            lo, hi = centre - rad, centre + rad
        elif isinstance(op, MaxPool):
            err, lo, hi = op.windows(err).amax(-1), op.windows(lo).amax(-1), op.windows(hi).amax(-1)
        else:  # ReLU: 1-Lipschitz, so the error does not grow
            lo, hi = lo.clamp_min(0), hi.clamp_min(0)
    top = torch.maximum(lo.abs(), hi.abs()).amax(1)  # the largest |logit| over the set
    k = lo.shape[1]
    lse = _SAFETY * u * (5 * top + temperature * (k + 2 + 4 * math.log(k)))  # the float32 log-sum-exp itself
    return (_SAFETY * err.amax(1) if worst else LAMBDA * err.amax(1).sqrt()) + lse


def safety_margin(model: nn.Module, x: torch.Tensor, threshold: float, eps, *, temperature: float = 1.0,
                  norm: str = "l2", rounding: str = "worst-case", _ops=None) -> torch.Tensor:
    """The margin ``tol`` (energy units, ``(N,)`` float64) that a sound radius keeps from the threshold:
    a bound on how far the model's own energy (its dtype, its device, the threshold rounded to it) can be
    from the exact energy of its graph anywhere in the ball ``B_eps(x_i)`` (``norm="linf"``: the box),
    including the float64 rounding of the bounds. The formula and why it holds: the module docstring.

    A decision is certified on a ball only when the bounds keep ``tol`` away from the threshold
    (``upper <= threshold - tol`` for an ID decision, ``lower > threshold + tol`` for an OOD one); a point
    within ``tol`` of the threshold gets radius 0."""
    from .bounds import _inputs

    x64, eps_t = _inputs(model, x, eps, norm)
    ops = _ops if _ops is not None else build_graph(model, tuple(x.shape[1:]))
    return margin_on(ops, InputSet(x64, eps_t, norm), threshold, temperature, unit_roundoff(model) + _U64, rounding)


def margin_on(ops: list, inp: InputSet, threshold: float, temperature: float, u: float,
              rounding: str = "worst-case") -> torch.Tensor:
    """:func:`safety_margin` on a built graph and input set, for the unit roundoff ``u`` (model + float64)."""
    return evaluation_error(ops, inp, temperature, u, rounding) + _SAFETY * u * abs(float(threshold))


@torch.no_grad()
def model_energy(model: nn.Module, x: torch.Tensor, temperature: float = 1.0, batch_size: int = 1024) -> torch.Tensor:
    """The model's own energies ``(N,)`` (its dtype and device, eval mode; returned on the CPU): the numbers
    its decisions ``E <= threshold`` are made from."""
    p = next(model.parameters())
    with eval_mode(model):
        out = [energy(model(x[i:i + batch_size].to(p.device, p.dtype)), temperature).cpu()
               for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def decisions(model: nn.Module, x: torch.Tensor, threshold: float, eps, temperature: float, ops: list,
              norm: str = "l2", rounding: str = "worst-case") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(decide_id, tol, safe)``, each ``(N,)``: the model's own decisions (``E_model <= threshold``), the
    safety margin over ``B_eps`` (:func:`safety_margin`), and whether a certificate may be tried at all:
    the exact energy further than ``tol`` from the threshold *and* on the model's side of it."""
    decide_id = model_energy(model, x, temperature) <= threshold  # compared in the model's dtype, as a user would
    tol = safety_margin(model, x, threshold, eps, temperature=temperature, norm=norm, rounding=rounding, _ops=ops)
    e_exact = -temperature * torch.logsumexp(run_graph(ops, x.detach().cpu().to(_DTYPE)) / temperature, dim=1)
    safe = ((threshold - e_exact).abs() > tol) & ((e_exact <= threshold) == decide_id)
    return decide_id, tol, safe
