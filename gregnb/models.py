"""Small networks for the CPU chapters.

Every model maps inputs to logits ``(N, K)`` and, with ``return_features=True``, also
returns the penultimate features ``h(x)`` of shape ``(N, D)`` (``f = fc(h(x))``), which the
energy-based sampler of chapter 05 clusters.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["MLP", "SmallCNN", "LipschitzCNN", "MaxPool2x2", "ResNet18_32x32", "resnet18_32x32", "WideResNet", "wrn40_2", "DenseNet3",
           "densenet100", "build_model", "ARCHS"]

_ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU, "tanh": nn.Tanh}


def _check_images(model: nn.Module, x: torch.Tensor) -> None:
    """Images must be ``(N, C, H, W)`` with the model's number of input channels."""
    if x.ndim != 4 or x.shape[1] != model.in_channels:
        raise ValueError(f"{type(model).__name__} expects images of shape (N, {model.in_channels}, H, W), "
                         f"got {tuple(x.shape)}")


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` (2x2 windows, stride 2, odd edges dropped), faster where autograd is off.

    Without autograd (scoring candidates, evaluation, ``torch.no_grad``) the output is the elementwise maximum of
    the four strided views: about 8x faster than ``max_pool2d`` on a CPU for the digits CNN's maps, and the same
    values bit for bit (a maximum is exact; NaN propagates in both). With autograd ``max_pool2d`` runs, so
    gradients are routed to one element of a tied window as usual. A subclass, so code that reads a model's
    layers (Lipschitz bounds, certificates) sees a ``MaxPool2d``.
    """

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() and x.requires_grad) or x.ndim != 4 or min(x.shape[-2:]) < 2:
            return super().forward(x)   # with autograd, or an input max_pool2d rejects (it says why)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        return torch.maximum(torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]),
                             torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]))


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
            MaxPool2x2(),
            *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, n_classes)
        self.in_channels, self.n_classes, self.feature_dim = in_channels, n_classes, 2 * width

    def forward(self, x: torch.Tensor, return_features: bool = False):
        _check_images(self, x)
        h = self.body(x)
        logits = self.fc(h)
        return (logits, h) if return_features else logits


class _OperatorNorm(nn.Module):
    """Parametrization ``W -> scale * W / sigma(W)``, ``sigma`` the spectral norm of the layer *as an
    operator on its actual input shape* (not of the reshaped kernel), estimated by power iteration on
    ``A^T A`` with a persistent vector, one step per training forward pass (Miyato et al. 2018's
    trick, applied to the whole convolution operator as in Gouk et al. 2021). Eval mode reuses the
    stored vector, so the weight is fixed. The estimate approaches sigma from below; certificates
    recompute the exact norms (:func:`gregnb.lipschitz.global_lipschitz_bound`)."""

    def __init__(self, layer: nn.Module, in_shape: tuple[int, ...], scale: float = 1.0, iters: int = 1):
        super().__init__()
        self.conv = isinstance(layer, nn.Conv2d)
        self.stride, self.padding = (layer.stride, layer.padding) if self.conv else (None, None)
        self.scale, self.iters = float(scale), int(iters)
        u = torch.randn(1, *in_shape)
        self.register_buffer("u", u / u.norm())
        with torch.no_grad():  # start near the top singular vector
            for _ in range(30):
                self._power_step(layer.weight.detach())

    def _op(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(v, w, None, self.stride, self.padding) if self.conv else v @ w.T

    def _power_step(self, w: torch.Tensor) -> None:
        with torch.enable_grad():
            u = self.u.clone().requires_grad_(True)
            av = self._op(u, w)
            (g,) = torch.autograd.grad(av, u, av)  # A^T A u
        self.u.copy_(g / g.norm().clamp_min(1e-12))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                for _ in range(self.iters):
                    self._power_step(w.detach())
        sigma = self._op(self.u, w).norm()
        return w * (self.scale / sigma.clamp_min(1e-12))


class LipschitzCNN(nn.Module):
    """Lipschitz by design: the :class:`SmallCNN` layout with every linear layer's exact operator norm
    held at 1, no BatchNorm, so the product bound on the logits' (and the energy's) ℓ2 Lipschitz
    constant is ``lipschitz`` by construction (Anil et al. 2019, Trockman & Kolter 2021 build such
    networks from orthogonal layers; here spectral normalisation of each operator, Miyato et al. 2018).

    conv(w) -> ReLU -> conv(2w) -> ReLU -> maxpool(2) -> conv(2w) -> ReLU -> flatten -> fc(K).
    Convolutions are normalised to operator norm 1 on their input shapes, the fc to ``lipschitz``
    (logit units per input unit; ReLU and max-pool over disjoint windows are 1-Lipschitz). The
    features are the flattened last map (``2w * (input_size / 2)^2`` values): a global average pool, as in
    :class:`SmallCNN`, would shrink every signal that is not spatially uniform, which a normalised network
    cannot win back. Inputs ``(N, C, input_size, input_size)``. The counterpoint to GReg, which flattens
    the energy by a penalty instead.
    """

    def __init__(self, n_classes: int = 10, in_channels: int = 1, width: int = 16, lipschitz: float = 32.0,
                 input_size: int = 8, power_iters: int = 1):
        super().__init__()
        from torch.nn.utils import parametrize

        if not (isinstance(lipschitz, (int, float)) and 0 < lipschitz < float("inf")):
            raise ValueError(f"lipschitz must be a positive finite number, got {lipschitz!r}")
        if input_size % 2 or input_size < 2:
            raise ValueError(f"input_size must be even (one 2x2 max-pool), got {input_size}")
        s = input_size
        convs = [(nn.Conv2d(in_channels, width, 3, padding=1), (in_channels, s, s)),
                 (nn.Conv2d(width, 2 * width, 3, padding=1), (width, s, s)),
                 (nn.Conv2d(2 * width, 2 * width, 3, padding=1), (2 * width, s // 2, s // 2))]
        for conv, shape in convs:
            parametrize.register_parametrization(conv, "weight", _OperatorNorm(conv, shape, 1.0, power_iters))
        self.body = nn.Sequential(convs[0][0], nn.ReLU(), convs[1][0], nn.ReLU(), MaxPool2x2(), convs[2][0],
                                  nn.ReLU(), nn.Flatten())
        feat = 2 * width * (s // 2) ** 2
        self.fc = nn.Linear(feat, n_classes)
        parametrize.register_parametrization(self.fc, "weight", _OperatorNorm(self.fc, (feat,), lipschitz, power_iters))
        self.in_channels, self.n_classes, self.feature_dim = in_channels, n_classes, feat
        self.lipschitz = float(lipschitz)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        _check_images(self, x)
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
        _check_images(self, x)
        h = self.pool(self.layers(self.stem(x)))
        logits = self.fc(h)
        return (logits, h) if return_features else logits


def resnet18_32x32(n_classes: int = 10, in_channels: int = 3) -> ResNet18_32x32:
    """ResNet-18 for 32x32 images (see :class:`ResNet18_32x32`)."""
    return ResNet18_32x32(n_classes, in_channels)


class _WideBasic(nn.Module):
    """Pre-activation wide residual block (Zagoruyko & Komodakis), as in the OE / energy code."""

    def __init__(self, cin: int, cout: int, stride: int, drop: float):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = drop
        self.equal = cin == cout
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = torch.relu(self.bn2(y))
        if self.drop > 0:
            y = nn.functional.dropout(y, p=self.drop, training=self.training)
        y = self.conv2(y)
        return y + (x if self.equal else self.shortcut(o))


class WideResNet(nn.Module):
    """WRN-depth-widen for 32x32 inputs. ``wrn40_2`` is the energy paper's and GReg's CIFAR network.
    Features: the global average pool of the last stage (64 * widen channels)."""

    def __init__(self, depth: int = 40, widen: int = 2, n_classes: int = 10, in_channels: int = 3, drop: float = 0.3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for stage, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBasic(widths[stage] if i == 0 else widths[stage + 1], widths[stage + 1],
                                         stride if i == 0 else 1, drop))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(widths[3])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(widths[3], n_classes)
        self.in_channels, self.n_classes, self.feature_dim = in_channels, n_classes, widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, return_features: bool = False):
        _check_images(self, x)
        h = self.pool(torch.relu(self.bn(self.blocks(self.conv1(x)))))
        logits = self.fc(h)
        return (logits, h) if return_features else logits


def wrn40_2(n_classes: int = 10, in_channels: int = 3, drop: float = 0.3) -> WideResNet:
    """WRN-40-2 (dropout 0.3, as in the OE / energy papers' CIFAR models)."""
    return WideResNet(40, 2, n_classes, in_channels, drop)


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        y = self.conv1(torch.relu(self.bn1(x)))
        y = self.conv2(torch.relu(self.bn2(y)))
        return torch.cat([x, y], 1)


class _Transition(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return nn.functional.avg_pool2d(self.conv(torch.relu(self.bn(x))), 2)


class DenseNet3(nn.Module):
    """DenseNet-BC for 32x32 inputs (three dense blocks, compression 0.5). ``densenet100`` is the
    depth-100, growth-12 network of the OE / energy / GReg CIFAR experiments (342-d features)."""

    def __init__(self, depth: int = 100, growth: int = 12, n_classes: int = 10, in_channels: int = 3,
                 reduction: float = 0.5):
        super().__init__()
        n = (depth - 4) // 6  # bottleneck layers per block
        c = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        for block in range(3):
            for _ in range(n):
                layers.append(_Bottleneck(c, growth))
                c += growth
            if block < 2:
                out = int(c * reduction)
                layers.append(_Transition(c, out))
                c = out
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, n_classes)
        self.in_channels, self.n_classes, self.feature_dim = in_channels, n_classes, c

    def forward(self, x: torch.Tensor, return_features: bool = False):
        _check_images(self, x)
        h = self.pool(torch.relu(self.bn(self.blocks(self.conv1(x)))))
        logits = self.fc(h)
        return (logits, h) if return_features else logits


def densenet100(n_classes: int = 10, in_channels: int = 3) -> DenseNet3:
    """DenseNet-BC-100 with growth rate 12."""
    return DenseNet3(100, 12, n_classes, in_channels)


#: name -> constructor ``(n_classes=..., in_channels=...)`` for the CLI
ARCHS = {"small_cnn": SmallCNN, "resnet18_32x32": resnet18_32x32, "wrn40_2": wrn40_2, "densenet100": densenet100}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name: ``"mlp"``, ``"small_cnn"``, ``"resnet18_32x32"``, ``"wrn40_2"``, ``"densenet100"``."""
    registry = {"mlp": MLP, **ARCHS}
    try:
        return registry[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(registry)}") from None
