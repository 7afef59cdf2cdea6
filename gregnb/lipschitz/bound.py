"""A guaranteed global Lipschitz bound (product of spectral norms) and the certified radius it gives.

Equation labels (E8), (E9) refer to docs/method.md."""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import validate
from ..inference import eval_mode


__all__ = ["global_lipschitz_bound", "certified_radius", "SUPPORTED_LAYERS"]


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
@torch.inference_mode(False)  # the power iteration differentiates, also inside a caller's inference_mode()
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
    layers = _layers(validate.module("model", model))
    max_dense, iters = validate.whole("max_dense", max_dense, 0), validate.whole("iters", iters)
    if input_shape is None:
        if hasattr(model, "in_dim"):
            input_shape = (model.in_dim,)
        elif hasattr(model, "in_channels"):
            input_shape = (model.in_channels, 8, 8)
        else:
            raise ValueError("pass input_shape: the shape of one input sample")
    dims = [validate.scalar(d) for d in input_shape] if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if dims is None or not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise ValueError(f"input_shape must be one sample's shape, a tuple of whole numbers >= 1 such as (2,) or "
                         f"(1, 8, 8), got {validate.describe(input_shape)}")
    with eval_mode(model):
        gen = torch.Generator().manual_seed(0)
        shape = tuple(input_shape)
        factors: list[tuple[str, float]] = []
        i = 0
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
    bound = float(math.prod(f for _, f in factors))
    return (bound, factors) if return_factors else bound


# ---------------------------------------------------------------- certificates and attacks

def certified_radius(energies: torch.Tensor, threshold: float, lipschitz: float | torch.Tensor,
                     eps: float | None = None) -> torch.Tensor:
    """(E8): the radius within which each sample's decision cannot change, *given* a Lipschitz constant.

    A sample is ID when ``E <= threshold`` (LOW = ID), OOD otherwise. If the energy is
    ``L``-Lipschitz on the ball (``lipschitz``: one number, or one per sample), the decision holds for
    every ``x'`` with ``||x' - x|| < |threshold - E(x)| / L``; ``eps`` caps it (the ball the constant
    was computed on). A sample exactly at the threshold gets radius 0.

    **A certificate only when ``lipschitz`` is an upper bound** on the ball, e.g.
    :func:`global_lipschitz_bound`. With an *estimate* such as :func:`local_lipschitz` (the largest gradient
    norm a search found: a lower bound on the true constant) the result is an **estimated radius** that
    certifies nothing: it can exceed the true radius. Sound radii with rounding accounted for:
    :func:`gregnb.certify.sound_radius`.

    Returns ``(N,)`` radii in input units (``inf`` where ``L == 0`` and no ``eps`` is given).
    """
    e = _float64("energies", energies)
    if len(e) == 0 or not torch.isfinite(e).all():
        raise ValueError("energies must be a non-empty collection of finite numbers")
    threshold = validate.number("threshold", threshold)
    lip = _float64("lipschitz", lipschitz)
    if lip.numel() not in (1, len(e)):
        raise ValueError(f"lipschitz must be one number or one per sample ({len(e)}), got {lip.numel()}")
    if (lip < 0).any() or not torch.isfinite(lip).all():
        raise ValueError("lipschitz constants must be finite and >= 0")
    eps = validate.number("eps", eps, low=0.0, optional=True, finite=False, hint="the ball's radius")
    margin = (threshold - e).abs()
    radius = torch.where(lip > 0, margin / lip.clamp_min(1e-300), torch.full_like(margin, math.inf))
    radius = torch.where(margin == 0, torch.zeros_like(radius), radius)
    if eps is not None:
        radius = radius.clamp_max(eps)
    return radius


def _float64(name: str, values) -> torch.Tensor:
    """``values`` (a number, a list, an array or a tensor of numbers) as a flat float64 tensor; else a clear error."""
    if values is None or isinstance(values, (str, bool)):
        raise ValueError(f"{name} must be a number or a collection of numbers, got {validate.describe(values)}")
    try:
        return torch.as_tensor(values, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a number or a collection of numbers, got "
                         f"{validate.describe(values)}") from None
