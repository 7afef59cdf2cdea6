"""Many small networks as one module: M copies of an :class:`~gregnb.models.MLP` or a
:class:`~gregnb.models.SmallCNN`, each with its own weights, run side by side.

A stacked network takes inputs ``(M, B, *input_shape)`` (member ``m`` sees row ``m``) and returns logits
``(M, B, K)`` (and features ``(M, B, D)``). Convolutions become grouped convolutions (``groups = M``), so
member ``m``'s channels only see member ``m``'s channels; BatchNorm runs over ``M x C`` channels, which is
exactly a separate BatchNorm per member (its statistics are per channel); linear layers are batched matrix
products with weights ``(M, out, in)``. Activations, pooling and flattening act per channel or per row and
are kept as they are. Members share no parameter, so the gradient of a sum of per-member losses is each
member's own gradient, and an elementwise optimiser (Adam, SGD) over the stacked parameters updates each
member as it would alone. ``StackedNet(models)`` holds copies of M models of one architecture and
:func:`unstack_into` writes each member's weights and BatchNorm statistics back.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..models import MLP, SmallCNN

__all__ = ["StackedNet", "unstack_into", "stack_signature"]

#: modules that act per channel / per row and are reused as they are inside a stacked body
_PASS = (nn.ReLU, nn.Softplus, nn.ELU, nn.Tanh, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)


class _StackedLinear(nn.Module):
    """M linear layers ``(M, B, in) -> (M, B, out)``: weight ``(M, out, in)``, bias ``(M, out)``."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([l.weight.detach() for l in layers]).clone())
        self.bias = nn.Parameter(torch.stack([l.bias.detach() for l in layers]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


def _stack_conv(layers: list[nn.Conv2d]) -> nn.Conv2d:
    l0, m = layers[0], len(layers)
    conv = nn.Conv2d(m * l0.in_channels, m * l0.out_channels, l0.kernel_size, l0.stride, l0.padding, l0.dilation,
                     groups=m, bias=l0.bias is not None, padding_mode=l0.padding_mode)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([l.weight for l in layers]))
        if l0.bias is not None:
            conv.bias.copy_(torch.cat([l.bias for l in layers]))
    return conv


def _stack_bn(layers: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    l0, m = layers[0], len(layers)
    bn = nn.BatchNorm2d(m * l0.num_features, l0.eps, l0.momentum, l0.affine, l0.track_running_stats)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(l0, name) is not None:
                getattr(bn, name).copy_(torch.cat([getattr(l, name) for l in layers]))
        if l0.track_running_stats:
            bn.num_batches_tracked.copy_(l0.num_batches_tracked)
    return bn


def stack_signature(model: nn.Module):
    """A hashable description of ``model``'s architecture if it can be stacked (None if not): models with
    equal signatures stack together."""
    if type(model) is MLP:
        kind = "vector"
    elif type(model) is SmallCNN:
        kind = "image"
    else:
        return None
    parts = []
    for layer in [*model.body, model.fc]:
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1:
                return None
            parts.append(("conv", layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                          layer.padding, layer.dilation, layer.bias is not None, layer.padding_mode))
        elif isinstance(layer, nn.BatchNorm2d):
            parts.append(("bn", layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats))
        elif isinstance(layer, nn.Linear):
            parts.append(("linear", layer.in_features, layer.out_features, layer.bias is not None))
        elif isinstance(layer, _PASS):
            parts.append((type(layer).__name__, repr(layer)))
        else:
            return None
    return (kind, tuple(parts))


class StackedNet(nn.Module):
    """M networks of one architecture (MLP or SmallCNN) as one module; see the module docstring.

    ``forward(x, return_features=False)``: ``x`` of shape ``(M, B, *input_shape)``; returns logits
    ``(M, B, K)`` (and penultimate features ``(M, B, D)``).
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("stack at least one model")
        sig = stack_signature(models[0])
        if sig is None or any(stack_signature(m) != sig for m in models[1:]):
            raise ValueError("StackedNet needs models of one stackable architecture (MLP or SmallCNN, same "
                             "sizes); got " + ", ".join(sorted({type(m).__name__ for m in models})))
        self.kind, self.n_members = sig[0], len(models)
        body = []
        for layers in zip(*[m.body for m in models]):
            l0 = layers[0]
            if isinstance(l0, nn.Conv2d):
                body.append(_stack_conv(list(layers)))
            elif isinstance(l0, nn.BatchNorm2d):
                body.append(_stack_bn(list(layers)))
            elif isinstance(l0, nn.Linear):
                body.append(_StackedLinear(list(layers)))
            else:
                body.append(copy.deepcopy(l0))
        self.body = nn.Sequential(*body)
        self.fc = _StackedLinear([m.fc for m in models])
        self.n_classes, self.feature_dim = models[0].n_classes, models[0].feature_dim

    def forward(self, x: torch.Tensor, return_features: bool = False):
        m = self.n_members
        if x.shape[0] != m:
            raise ValueError(f"a stack of {m} networks expects inputs (M={m}, B, ...), got {tuple(x.shape)}")
        if self.kind == "image":  # (M, B, C, H, W) -> (B, M*C, H, W): member m owns channels [m*C, (m+1)*C)
            b = x.shape[1]
            h = self.body(x.transpose(0, 1).reshape(b, -1, *x.shape[3:]))
            h = h.reshape(b, m, -1).transpose(0, 1)
        else:
            h = self.body(x)
        logits = self.fc(h)
        return (logits, h) if return_features else logits


@torch.no_grad()
def unstack_into(stacked: StackedNet, models: list[nn.Module]) -> None:
    """Write member ``i``'s weights and BatchNorm statistics into ``models[i]`` (their architecture unchanged)."""
    if len(models) != stacked.n_members:
        raise ValueError(f"the stack holds {stacked.n_members} members, got {len(models)} models")
    for i, model in enumerate(models):
        for src, dst in zip([*stacked.body, stacked.fc], [*model.body, model.fc]):
            if isinstance(src, _StackedLinear):
                dst.weight.copy_(src.weight[i])
                dst.bias.copy_(src.bias[i])
            elif isinstance(src, (nn.Conv2d, nn.BatchNorm2d)):
                n = dst.out_channels if isinstance(dst, nn.Conv2d) else dst.num_features
                for name in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(dst, name, None) is not None:
                        getattr(dst, name).copy_(getattr(src, name)[i * n:(i + 1) * n])
                if isinstance(dst, nn.BatchNorm2d) and dst.track_running_stats:
                    dst.num_batches_tracked.copy_(src.num_batches_tracked)
