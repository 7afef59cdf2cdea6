"""A network as a flat list of simple operations, for bound propagation.

The certifiers in :mod:`gregnb.certify` do not walk PyTorch modules: they first turn the model into
a list of three kinds of operation, on one sample's shape, in float64:

* :class:`Affine` ``v -> W v + b``: Linear and Conv2d layers (a following eval-mode BatchNorm folded
  in: ``W <- diag(s) W``, ``b <- s b + shift``), a BatchNorm on its own, average pooling, Flatten.
  ``W`` is kept as functions (apply, apply ``|W|``, apply ``W^T``), so convolutions stay convolutions.
* :class:`ReLU`.
* :class:`MaxPool`: max over disjoint ``k x k`` windows (``kernel_size == stride``, no padding).

Anything else raises a ValueError naming the layer. The list's output is the logits ``f(x)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Affine", "ReLU", "MaxPool", "build_graph", "run_graph", "flat_layers", "CERTIFY_LAYERS"]

CERTIFY_LAYERS = ("Linear", "Conv2d (zero padding, groups=1)", "BatchNorm1d/2d (eval; folded)", "ReLU",
                  "MaxPool2d (kernel == stride, no padding)", "AvgPool2d (kernel == stride)",
                  "AdaptiveAvgPool2d (even windows)", "Flatten", "Identity, Dropout (eval)")
_DTYPE = torch.float64


@dataclass
class Affine:
    """``y = W v + b`` for one sample of shape ``in_shape`` -> ``out_shape``; batched over dim 0.

    ``fn(v) = W v``, ``fn_abs(v) = |W| v`` (entry-wise absolute value), ``fnT(lam) = W^T lam``;
    ``bias`` has shape ``out_shape``; ``row_norms()`` are the ℓ2 norms of W's rows (shape ``out_shape``)."""

    in_shape: tuple
    out_shape: tuple
    fn: Callable
    fn_abs: Callable
    bias: torch.Tensor
    fnT: Callable | None = None
    fn_sq: Callable | None = None  # v -> (W*W) v, for the row norms
    name: str = "affine"
    fan_in: int = 1  # the most terms in one output's sum (for rounding-error bounds)
    low: "Affine | None" = None  # the same operation in float32 (fast forward linear bounds)
    #: for the model's own rounding error (:mod:`gregnb.certify.rounding`): a bound on the sum of |terms|
    #: that make up the bias as the *model* computes it (a folded BatchNorm's ``|s| (|b| + |mean|) + |beta|``;
    #: default ``|bias|``), and the number of roundings one output goes through in the model (default
    #: ``fan_in + 2``: the products, the sum, the bias; a folded BatchNorm adds its own)
    bias_mag: torch.Tensor | None = None
    roundings: int | None = None

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.fn(v) + self.bias

    def transpose(self, lam: torch.Tensor) -> torch.Tensor:
        """``W^T lam`` for ``lam`` of shape ``(B, *out_shape)`` -> ``(B, *in_shape)``."""
        if self.fnT is not None:
            return self.fnT(lam)
        v = torch.zeros(lam.shape[0], *self.in_shape, dtype=lam.dtype, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.fn(v), v, lam)
        return g

    def row_norms(self) -> torch.Tensor:
        """``||W_i||_2`` for every output unit i (shape ``out_shape``): the exact ℓ2 first layer."""
        if self.fn_sq is not None:
            return self.fn_sq(torch.ones(1, *self.in_shape, dtype=_DTYPE))[0].clamp_min(0).sqrt()
        d = math.prod(self.in_shape)
        if d > 4096:
            raise ValueError(f"{self.name}: no cheap row norms for a first layer on {d} inputs")
        rows = self.fn(torch.eye(d, dtype=_DTYPE).view(d, *self.in_shape)).reshape(d, -1)
        return rows.norm(dim=0).view(self.out_shape)


@dataclass
class ReLU:
    shape: tuple
    name: str = "relu"


@dataclass
class MaxPool:
    """Max over disjoint ``k x k`` windows of a ``(C, H, W)`` map with ``H, W`` divisible by ``k``."""

    in_shape: tuple
    k: int
    name: str = "maxpool"

    @property
    def out_shape(self) -> tuple:
        c, h, w = self.in_shape
        return (c, h // self.k, w // self.k)

    def windows(self, v: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H/k, W/k, k*k)``."""
        b, (c, h, w), k = v.shape[0], self.in_shape, self.k
        return v.reshape(b, c, h // k, k, w // k, k).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // k, w // k, k * k)

    def unwindows(self, v: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`windows`."""
        b, (c, h, w), k = v.shape[0], self.in_shape, self.k
        return v.reshape(b, c, h // k, w // k, k, k).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


def flat_layers(model: nn.Module) -> list[nn.Module]:
    """An nn.Sequential, or a gregnb model with a Sequential ``body`` and an ``fc``, as a flat list."""
    if isinstance(model, nn.Sequential):
        seq = list(model)
    elif isinstance(getattr(model, "body", None), nn.Sequential) and hasattr(model, "fc"):
        seq = [*model.body, model.fc]
    else:
        raise ValueError(f"gregnb.certify supports nn.Sequential and gregnb's MLP / SmallCNN / LipschitzCNN, "
                         f"not {type(model).__name__}")
    out = []
    for m in seq:
        out.extend(flat_layers(m) if isinstance(m, nn.Sequential) else [m])
    return out


#: roundings a BatchNorm in eval mode adds per output: ``1 / sqrt(var + eps)``, the scale, the shift
#: ``beta - mean s`` and ``y s + shift`` (a few each, counted generously)
_BN_ROUNDINGS = 10


def _bn_mag(bn: nn.Module, s: torch.Tensor) -> torch.Tensor:
    """``|beta| + |mean s|``: the magnitude of the terms of a BatchNorm's shift as the model computes it."""
    mag = (bn.running_mean.detach().to(_DTYPE) * s).abs()
    return mag + bn.bias.detach().to(_DTYPE).abs() if bn.affine else mag


def _bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    s = 1.0 / torch.sqrt(bn.running_var.detach().to(_DTYPE) + bn.eps)
    if bn.affine:
        s = s * bn.weight.detach().to(_DTYPE)
        return s, bn.bias.detach().to(_DTYPE) - bn.running_mean.detach().to(_DTYPE) * s
    return s, -bn.running_mean.detach().to(_DTYPE) * s


def _dense(w: torch.Tensor, b: torch.Tensor, shape, name: str) -> Affine:
    wa, w2 = w.abs(), w * w
    return Affine(tuple(shape), (w.shape[0],), lambda v: v @ w.T, lambda v: v @ wa.T, b, lambda lam: lam @ w,
                  lambda v: v @ w2.T, name=name, fan_in=w.shape[1])


def _linear(layer: nn.Linear, bn, shape) -> Affine:
    if len(shape) != 1:
        raise ValueError(f"Linear layer on inputs of shape {shape}: add a Flatten first")
    w = layer.weight.detach().to(_DTYPE)
    b = layer.bias.detach().to(_DTYPE) if layer.bias is not None else torch.zeros(w.shape[0], dtype=_DTYPE)
    mag, extra = b.abs(), 0
    if bn is not None:
        s, t = _bn_scale_shift(bn)
        w, b, mag, extra = w * s[:, None], b * s + t, mag * s.abs() + _bn_mag(bn, s), _BN_ROUNDINGS
    name = "linear" + ("+bn" if bn is not None else "")
    op = _dense(w, b, shape, name)
    op.low = _dense(w.float(), b.float(), shape, name)
    op.bias_mag, op.roundings = mag, op.fan_in + 2 + extra
    return op


def _conv_op(w: torch.Tensor, b: torch.Tensor, shape, st, pad, dil, name: str) -> Affine:
    out_shape = tuple(F.conv2d(torch.zeros(1, *shape, dtype=w.dtype), w, None, st, pad, dil).shape[1:])
    out_pad = tuple(shape[1 + i] - ((out_shape[1 + i] - 1) * st[i] - 2 * pad[i] + dil[i] * (w.shape[2 + i] - 1) + 1)
                    for i in range(2))
    wa, w2 = w.abs(), w * w
    return Affine(tuple(shape), out_shape, lambda v: F.conv2d(v, w, None, st, pad, dil),
                  lambda v: F.conv2d(v, wa, None, st, pad, dil), b.view(-1, 1, 1).expand(out_shape).contiguous(),
                  lambda lam: F.conv_transpose2d(lam, w, None, st, pad, out_pad, 1, dil),
                  lambda v: F.conv2d(v, w2, None, st, pad, dil), name=name, fan_in=w[0].numel())


def _conv(layer: nn.Conv2d, bn, shape) -> Affine:
    if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        raise ValueError("Conv2d: only groups=1 and numeric zero padding are supported by gregnb.certify")
    w = layer.weight.detach().to(_DTYPE)
    b = layer.bias.detach().to(_DTYPE) if layer.bias is not None else torch.zeros(w.shape[0], dtype=_DTYPE)
    mag, extra = b.abs(), 0
    if bn is not None:
        s, t = _bn_scale_shift(bn)
        w, b, mag, extra = w * s[:, None, None, None], b * s + t, mag * s.abs() + _bn_mag(bn, s), _BN_ROUNDINGS
    args = (shape, layer.stride, layer.padding, layer.dilation, "conv" + ("+bn" if bn is not None else ""))
    op = _conv_op(w, b, *args)
    op.low = _conv_op(w.float(), b.float(), *args)
    op.bias_mag = mag.view(-1, 1, 1).expand(op.out_shape).contiguous()
    op.roundings = op.fan_in + 2 + extra
    return op


def _elementwise(s: torch.Tensor, t: torch.Tensor, shape, name: str) -> Affine:
    view = (-1,) + (1,) * (len(shape) - 1)
    s, t = s.view(view), t.view(view).expand(shape).contiguous()
    op = Affine(tuple(shape), tuple(shape), lambda v: v * s, lambda v: v * s.abs(), t, lambda lam: lam * s,
                lambda v: v * s * s, name=name)
    s32, t32 = s.float(), t.float()
    op.low = Affine(tuple(shape), tuple(shape), lambda v: v * s32, lambda v: v * s32.abs(), t32, name=name)
    return op


def _positive_linear(fn: Callable, shape, name: str, fan_in: int) -> Affine:
    """A linear map with non-negative weights (pooling, reshaping): ``|W| = W``; works in any dtype."""
    out_shape = tuple(fn(torch.zeros(1, *shape, dtype=_DTYPE)).shape[1:])
    op = Affine(tuple(shape), out_shape, fn, fn, torch.zeros(out_shape, dtype=_DTYPE), name=name, fan_in=fan_in,
                fn_sq=lambda v: fn(v) / fan_in)  # equal weights 1 / fan_in (pooling) or 1 (reshaping)
    op.low = Affine(tuple(shape), out_shape, fn, fn, torch.zeros(out_shape), name=name, fan_in=fan_in)
    return op


def build_graph(model: nn.Module, in_shape: tuple) -> list:
    """The model (in eval mode) as a list of :class:`Affine` / :class:`ReLU` / :class:`MaxPool` on
    inputs of one-sample shape ``in_shape``. Weights are copied as float64; the model is unchanged."""
    layers = [m for m in flat_layers(model) if not isinstance(m, (nn.Identity, nn.Dropout))]
    shape, ops, i = tuple(in_shape), [], 0
    while i < len(layers):
        layer, nxt = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        bn = nxt if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)) else None
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            op = _linear(layer, bn, shape) if isinstance(layer, nn.Linear) else _conv(layer, bn, shape)
            i += 2 if bn is not None else 1
        else:
            i += 1
            if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                scale, shift = _bn_scale_shift(layer)
                op = _elementwise(scale, shift, shape, "batchnorm")
                view = (-1,) + (1,) * (len(shape) - 1)
                op.bias_mag = _bn_mag(layer, scale).view(view).expand(shape).contiguous()
                op.roundings = _BN_ROUNDINGS
            elif isinstance(layer, nn.ReLU):
                op = ReLU(shape)
            elif isinstance(layer, nn.MaxPool2d):
                k, s = layer.kernel_size, layer.stride
                if not (k == s and isinstance(k, int) and layer.padding == 0 and layer.dilation == 1
                        and shape[1] % k == 0 and shape[2] % k == 0):
                    raise ValueError("MaxPool2d: only kernel_size == stride (an int dividing H and W), no padding")
                op = MaxPool(shape, k)
            elif isinstance(layer, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                if isinstance(layer, nn.AvgPool2d) and (layer.kernel_size != layer.stride or layer.padding != 0):
                    raise ValueError("AvgPool2d: only kernel_size == stride, no padding")
                if isinstance(layer, nn.AdaptiveAvgPool2d):
                    out = layer(torch.zeros(1, *shape)).shape[-2:]
                    if shape[-2] % out[0] or shape[-1] % out[1]:
                        raise ValueError("AdaptiveAvgPool2d with uneven windows is not supported")
                fan = math.prod(shape[-2:]) // math.prod(layer(torch.zeros(1, *shape)).shape[-2:])
                op = _positive_linear(layer, shape, type(layer).__name__, fan)
            elif isinstance(layer, nn.Flatten):
                op = _positive_linear(lambda v: v.flatten(1), shape, "flatten", 1)
                op.fnT = lambda lam, s=shape: lam.reshape(lam.shape[0], *s)
            else:
                raise ValueError(f"layer {type(layer).__name__} is not supported by gregnb.certify; "
                                 f"supported: {', '.join(CERTIFY_LAYERS)}")
        ops.append(op)
        shape = op.out_shape if not isinstance(op, ReLU) else op.shape
    if not ops or not isinstance(ops[0], Affine):
        raise ValueError("gregnb.certify needs a model whose first layer is linear (Linear or Conv2d)")
    return ops


def run_graph(ops: list, x: torch.Tensor) -> torch.Tensor:
    """The exact forward pass of the graph (float64): ``(B, *in_shape)`` -> logits ``(B, K)``."""
    v = x.to(_DTYPE)
    for op in ops:
        if isinstance(op, Affine):
            v = op(v)
        elif isinstance(op, ReLU):
            v = v.clamp_min(0)
        else:
            v = op.windows(v).amax(-1)
    return v
