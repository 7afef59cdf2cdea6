"""Measurements for chapter 07: the sandwich of radii, certified-detection curves and their area over log eps,
a scale for digits radii, and the Lipschitz-constrained CNN trained like the chapters' models.

The sandwich, per correctly detected point: ``{global, IBP, CROWN} <= true radius <= attack radius``.
The three are sound certificates, so each lies below the truth; an attack's radius lies above it. Among the
certificates no order is guaranteed: CROWN is usually the tightest, but IBP can fall below the global product
bound (chapter 07 measures that on the digits CNNs, where its intervals widen layer after layer).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .certify import sound_radius
from .data.base import Benchmark
from .inference import predict_logits
from .lipschitz import attack_radius
from .metrics import threshold_at_tpr
from .scores import energy

__all__ = ["energy_threshold", "radius_table", "certified_curve", "certified_area", "nearest_other_class",
           "lipschitz_models"]


def energy_threshold(model: nn.Module, data: Benchmark, tpr: float = 0.95) -> float:
    """The energy threshold ``gamma`` at which ``tpr`` of the ID test set is accepted (``E <= gamma``)."""
    return -threshold_at_tpr(-energy(predict_logits(model, data.test_x)), tpr)


def radius_table(model: nn.Module, x: torch.Tensor, threshold: float, *, is_id, eps_max: float,
                 methods=("global", "ibp", "crown"), attack: bool = True, attack_steps: int = 20,
                 n_bisect: int = 10, cell: float | None = None):
    """One row per point: its energy, whether it is detected correctly, the sound radius of every method
    in ``methods`` (0 where misdetected) and, with ``attack``, the smallest radius at which PGD flips
    the decision (:func:`gregnb.lipschitz.attack_radius`; ``inf`` if none within ``eps_max``).
    Radii in input units (ℓ2). Returns a pandas DataFrame."""
    import pandas as pd

    e = energy(predict_logits(model, x)).double()
    truth = torch.as_tensor(is_id, dtype=torch.bool).flatten()
    truth = truth.expand(len(x)) if truth.numel() == 1 else truth
    rows = {"energy": e.numpy(), "correct": ((e <= threshold) == truth).numpy()}
    for m in methods:
        rows[m] = sound_radius(model, x, threshold, method=m, eps_max=eps_max, is_id=truth, n_bisect=n_bisect,
                               cell=cell).numpy()
    if attack:
        r = attack_radius(model, x, threshold, eps_max=eps_max, steps=attack_steps, n_bisect=n_bisect)
        rows["attack"] = torch.where(torch.as_tensor(rows["correct"]), r.double(), torch.zeros_like(r.double())).numpy()
    return pd.DataFrame(rows)


def _radii_and_mask(radii, detected):
    r = radii.detach().double() if torch.is_tensor(radii) else torch.tensor(radii, dtype=torch.float64)
    r = r.flatten()
    if len(r) == 0 or (r < 0).any() or torch.isnan(r).any():
        raise ValueError("radii must be a non-empty collection of numbers >= 0")
    if detected is None:
        return r, r > 0
    mask = detected.detach().flatten() if torch.is_tensor(detected) else torch.tensor(detected).flatten()
    if mask.dtype != torch.bool or mask.shape != r.shape:
        raise ValueError(f"detected must be a boolean mask with one entry per radius ({len(r)}), "
                         f"got {mask.dtype} of shape {tuple(mask.shape)}")
    return r, mask


def certified_curve(radii, eps_grid, detected=None) -> torch.Tensor:
    """Unconditional certified detection: for each ``eps``, the share of *all* points that are detected
    correctly and certified at ``eps`` (``detected`` and ``radius >= eps``); at ``eps = 0``, the share detected.

    ``radii``: ``(N,)`` sound radii (0 where misdetected). ``detected``: ``(N,)`` booleans, the points the
    model decides correctly; without it a point counts as detected when its radius is > 0, which also drops
    a detected point whose certificate is 0 (e.g. one within rounding error of the threshold) from the
    curve at ``eps = 0``. Returns ``(len(eps_grid),)``."""
    r, mask = _radii_and_mask(radii, detected)
    grid = torch.as_tensor(eps_grid, dtype=torch.float64).flatten()
    return torch.stack([(mask & (r >= g)).double().mean() if g > 0 else mask.double().mean() for g in grid])


def certified_area(radii, eps_min: float, eps_max: float, detected=None) -> float:
    """The area under :func:`certified_curve` over ``log eps`` from ``eps_min`` to ``eps_max``, divided by
    that range's length ``log(eps_max / eps_min)``: the curve's mean over a log-uniform ``eps``, in [0, 1].

    Computed exactly (the curve is a step function): the mean over *all* points of
    ``clip(log(r / eps_min) / log(eps_max / eps_min), 0, 1)`` for a detected point, 0 for a missed one. A
    detected point certified beyond ``eps_max`` counts 1, one certified below ``eps_min`` counts 0: the area
    measures certification over the range, not detection. ``detected`` as in :func:`certified_curve`."""
    lo = float(eps_min)
    hi = float(eps_max)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"need 0 < eps_min < eps_max (both finite), got eps_min={eps_min}, eps_max={eps_max}")
    r, mask = _radii_and_mask(radii, detected)
    share = (torch.log(r / lo) / math.log(hi / lo)).clamp(0.0, 1.0)   # log 0 = -inf clamps to 0
    return float(torch.where(mask, share, torch.zeros_like(share)).mean())


def nearest_other_class(data: Benchmark, n: int = 200) -> torch.Tensor:
    """A scale for digits radii: the ℓ2 distance from each of the first ``n`` ID test images to the
    nearest *training* image of another class (pixel units). A certificate that large would survive
    morphing the image into a different digit. Returns ``(n,)``."""
    x, y = data.test_x[:n].flatten(1).double(), data.test_y[:n]
    train, ty = data.train_x.flatten(1).double(), data.train_y
    d = torch.cdist(x, train)
    d[y[:, None] == ty[None, :]] = math.inf
    return d.min(1).values


def lipschitz_models(data: Benchmark, seed: int = 0, *, methods: dict | None = None, lipschitz: float = 32.0,
                     ce_epochs: int | None = None, finetune_epochs: int | None = None, cache: bool = True):
    """Train :class:`gregnb.models.LipschitzCNN` the way :func:`gregnb.experiments.compare_methods`
    trains the chapters' CNN: cross-entropy from scratch, margins proposed from that model, then a
    fine-tune per entry of ``methods`` (default: the energy loss, and GReg at the digits weight chapter 04 chose on
    validation data, :data:`gregnb.presets.DIGITS_LAMBDA_GRAD`). Cached in ``data/models``.

    Returns ``(models, margins)``: label -> trained model (eval mode), and ``(m_in, m_out)``.
    """
    from .config import seed_everything
    from .losses import propose_margins
    from .models import LipschitzCNN
    from .presets import CE_RECIPES, DIGITS_LAMBDA_GRAD, FINETUNE_RECIPES

    if len(data.input_shape) != 3:
        raise ValueError(f"the Lipschitz CNN takes images (C, H, W), not inputs of shape {data.input_shape}")
    methods = methods if methods is not None else {"energy loss": dict(method="energy"),
                                                   "GReg": dict(method="greg", lambda_grad=DIGITS_LAMBDA_GRAD)}
    with torch.random.fork_rng():
        seed_everything(seed)
        base = LipschitzCNN(data.n_classes, data.input_shape[0], lipschitz=lipschitz, input_size=data.input_shape[1])
        recipe = dict(CE_RECIPES["digits"], seed=seed, progress=False)
        if ce_epochs is not None:
            recipe["epochs"] = ce_epochs
        _train_many([base], data, ["ce"], [recipe], cache, lipschitz)
        m_in, m_out = propose_margins(base, data.train_x, data.aux_x)
        labels, models, fits, recipes = list(methods), [], [], []
        for kwargs in methods.values():
            kwargs = dict(kwargs)
            fits.append(kwargs.pop("method"))
            models.append(copy.deepcopy(base))
            recipes.append(dict(FINETUNE_RECIPES["digits"], seed=seed, progress=False, m_in=m_in, m_out=m_out, **kwargs))
            if finetune_epochs is not None:
                recipes[-1]["epochs"] = finetune_epochs
        _train_many(models, data, fits, recipes, cache, lipschitz)
    return {label: model.eval() for label, model in zip(labels, models)}, (m_in, m_out)


def _train_many(models, data, methods, recipes, cache, lipschitz):
    """Train (or load from the cache) ``models[i]`` with ``methods[i]`` and ``recipes[i]`` through
    :func:`gregnb.train.fit_many`, as the chapters' CNNs train (side by side on a CPU, one thread each); the cache
    key names the Lipschitz architecture and its budget."""
    from .cache import cached_fit_many

    settings = [{"method": method, "arch": "LipschitzCNN", "lipschitz": lipschitz,
                 **{k: v for k, v in r.items() if k != "progress"}} for method, r in zip(methods, recipes)]
    return cached_fit_many(models, data, [{**r, "method": m} for m, r in zip(methods, recipes)],
                           settings if cache else None, desc="Lipschitz CNN")
