"""Small networks for the CPU chapters.

Every model maps inputs to logits ``(N, K)`` and, with ``return_features=True``, also
returns the penultimate features ``h(x)`` of shape ``(N, D)`` (``f = fc(h(x))``), which the
energy-based sampler of chapter 04 clusters.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["MLP", "SmallCNN", "ResNet18_32x32", "resnet18_32x32", "build_model"]

_ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU, "tanh": nn.Tanh}


def _activation(name: str) -> type[nn.Module]:
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}") from None


class MLP(nn.Module):
    """Fully connected classifier for 2-D toy data.

    Args:
        in_dim: input dimension (2 for the toy sets).
        n_classes: number of ID classes K.
        hidden: widths of the hidden layers; the last one is the feature dimension D.
        activation: "relu" (piecewise linear, as in the paper's networks) or a smooth one.
    """

    def __init__(self, in_dim: int = 2, n_classes: int = 3, hidden: Sequence[int] = (64, 64), activation: str = "relu"):
        super().__init__()
        if not hidden:
            raise ValueError("hidden must list at least one layer width")
        act = _activation(activation)
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, n_classes)
        self.in_dim, self.n_classes, self.feature_dim = in_dim, n_classes, width

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLP expects inputs of shape (N, {self.in_dim}), got {tuple(x.shape)}")
        h = self.body(x)
        logits = self.fc(h)
        return (logits, h) if return_features else logits


class SmallCNN(nn.Module):
    """Convolutional classifier for 1x8x8 digits (a few thousand images train in seconds on a CPU).

    conv(w) -> BN -> ReLU -> conv(2w) -> BN -> ReLU -> maxpool(2) -> conv(2w) -> BN -> ReLU
    -> global average pool -> features (2w) -> fc(K), with width w = 16 by default.
    BatchNorm couples the samples of a batch in train mode, which matters for GReg's penalty.
    """

    def __init__(self, n_classes: int = 10, in_channels: int = 1, width: int = 16, batchnorm: bool = True):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            norm = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm), norm, nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, width),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, n_classes)
        self.in_channels, self.n_classes, self.feature_dim = in_channels, n_classes, 2 * width

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SmallCNN expects images of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = self.body(x)
        logits = self.fc(h)
        return (logits, h) if return_features else logits


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18_32x32(nn.Module):
    """ResNet-18 for 32x32 inputs (CIFAR style: 3x3 stem, no max-pool), as in the GReg and OpenOOD code.
    Features: the 512-d global average pool."""

    def __init__(self, n_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(512, n_classes)
        self.in_channels, self.n_classes, self.feature_dim = in_channels, n_classes, 512

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNet18_32x32 expects images of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h = self.pool(self.layers(self.stem(x)))
        logits = self.fc(h)
        return (logits, h) if return_features else logits


def resnet18_32x32(n_classes: int = 10, in_channels: int = 3) -> ResNet18_32x32:
    """ResNet-18 for 32x32 images (see :class:`ResNet18_32x32`)."""
    return ResNet18_32x32(n_classes, in_channels)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name: ``"mlp"``, ``"small_cnn"`` or ``"resnet18_32x32"``."""
    registry = {"mlp": MLP, "small_cnn": SmallCNN, "resnet18_32x32": ResNet18_32x32}
    try:
        return registry[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(registry)}") from None
