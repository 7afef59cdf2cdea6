"""Small experiment helpers: train a default model for a benchmark and repeat a measurement over
seeds, reporting mean ± std (the house rule: every claim comes with its spread)."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .cache import cached_training
from .config import seed_everything
from .data.base import Benchmark
from .evaluate import evaluate, predict_logits
from .lipschitz import certified_radius, global_lipschitz_bound, local_lipschitz
from .losses import propose_margins
from .metrics import threshold_at_tpr
from .models import MLP, SmallCNN
from .sampling import get_sampler
from .scores import energy
from .train import History, fit
from .train import main as train_main

__all__ = ["default_model", "train_classifier", "over_seeds", "mean_std_table", "compare_scores", "compare_methods",
           "FINETUNE_RECIPES", "collect_picks", "radius_summary", "run_or_load"]


def default_model(data: Benchmark, seed: int = 0) -> nn.Module:
    """The chapters' model for a benchmark: an MLP for 2-D inputs, the small CNN for 8x8 images.
    Initialised from ``seed``."""
    seed_everything(seed)
    if data.input_shape == (2,):
        return MLP(2, data.n_classes, hidden=(64, 64))
    if len(data.input_shape) == 3:
        return SmallCNN(data.n_classes, in_channels=data.input_shape[0])
    raise ValueError(f"no default model for inputs of shape {data.input_shape}; build one from gregnb.models")


#: Training settings that work for each benchmark with method "ce" (epochs are scaled by the caller).
CE_RECIPES = {"toy": dict(epochs=30, lr=5e-3, batch_size=64), "digits": dict(epochs=15, lr=3e-3, batch_size=64)}


def train_classifier(data: Benchmark, seed: int = 0, method: str = "ce", *, cache: bool = True,
                     **overrides) -> tuple[nn.Module, History]:
    """Train :func:`default_model` on ``data`` with a sensible recipe; ``overrides`` change it.
    With ``cache``, an identical earlier run is loaded from ``data/models`` instead (see :mod:`gregnb.cache`)."""
    recipe = dict(CE_RECIPES["toy" if data.input_shape == (2,) else "digits"])
    recipe.update(progress=False, seed=seed)
    recipe.update(overrides)
    model = default_model(data, seed)
    return model, _train(model, data, method, recipe, cache)


def _train(model: nn.Module, data: Benchmark, method: str, recipe: dict, cache: bool) -> History:
    if not cache:
        return fit(model, data, method, **recipe)
    settings = {"method": method, **{k: v for k, v in recipe.items() if k != "progress"}}
    return cached_training(model, data, settings, lambda m: fit(m, data, method, **recipe))


def over_seeds(run: Callable[[int], Iterable[dict]], seeds: Iterable[int]):
    """Call ``run(seed)`` for each seed; each call yields flat dicts (one row each). Returns a
    pandas DataFrame with a ``seed`` column added."""
    import pandas as pd

    rows = []
    for s in seeds:
        for row in run(s):
            rows.append({"seed": s, **row})
    return pd.DataFrame(rows)


def mean_std_table(df, index, columns, value: str, percent: bool = True, digits: int = 1):
    """Pivot ``df`` to ``index x columns`` cells reading "mean ± std" of ``value`` over seeds."""
    scale = 100.0 if percent else 1.0
    g = df.groupby([*([index] if isinstance(index, str) else index), columns])[value]
    stats = g.agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = [f"{scale * m:.{digits}f} ± {scale * (0.0 if np.isnan(s) else s):.{digits}f}"
                     for m, s in zip(stats["mean"], stats["std"])]
    return stats.pivot(index=index, columns=columns, values="cell")


def compare_scores(data: Benchmark, seeds: Iterable[int], scores=("msp", "max_logit", "energy"),
                   temperature: float = 1.0, **train_overrides):
    """Train one "ce" classifier per seed and evaluate each post-hoc score on every OOD set.

    Returns a long DataFrame: seed, score, ood (set name or "mean"), fpr95, auroc, aupr_in, aupr_out, accuracy.
    """

    def run(seed: int):
        model, _ = train_classifier(data, seed, **train_overrides)
        for score in scores:
            res = evaluate(model, data, score=score, temperature=temperature)
            for name, m in [*res["ood"].items(), ("mean", res["mean"])]:
                yield {"score": score, "ood": name, **m, "accuracy": res["accuracy"]}

    with torch.random.fork_rng():
        return over_seeds(run, seeds)


#: Fine-tuning settings for the outlier methods (from a "ce" model), per benchmark.
FINETUNE_RECIPES = {"toy": dict(epochs=15, lr=2e-3, batch_size=64, aux_batch_size=128),
                    "digits": dict(epochs=10, lr=1e-3, batch_size=64, aux_batch_size=128)}
#: From-scratch settings for the outlier methods (``init="scratch"``).
SCRATCH_RECIPES = {"toy": dict(epochs=40, lr=3e-3, batch_size=64, aux_batch_size=128),
                   "digits": dict(epochs=15, lr=3e-3, batch_size=64, aux_batch_size=128)}


def compare_methods(data: Benchmark, methods: dict[str, dict], seeds: Iterable[int], *, ce_epochs: int | None = None,
                    finetune_epochs: int | None = None, score: str = "energy", keep_models: bool = False,
                    cache: bool = True, init: str = "ce", margins: tuple[float, float] | None = None):
    """For each seed: train a "ce" model, propose margins from it, then fine-tune a copy with every
    entry of ``methods`` (label -> ``fit`` keyword arguments, e.g. ``{"GReg": dict(method="greg")}``;
    an entry with ``method="ce"`` and ``epochs=0`` keeps the "ce" model as it is; an entry's
    ``score`` overrides the score it is evaluated with, e.g. ``dict(method="ce", epochs=0, score="msp")``).

    ``init="scratch"`` trains each method from a fresh :func:`default_model` instead (same seed);
    ``margins`` fixes ``(m_in, m_out)`` instead of proposing them from the "ce" model.

    Returns ``(df, extras)``: a long DataFrame with seed, method, ood (set or "mean"), the four metrics,
    accuracy, and the last epoch's grad norms; and a dict with the margins per seed, each run's
    history and (if ``keep_models``) each model, keyed by ``(label, seed)``.
    """
    import pandas as pd

    if init not in ("ce", "scratch"):
        raise ValueError(f"init must be 'ce' or 'scratch', got {init!r}")
    kind = "toy" if data.input_shape == (2,) else "digits"
    recipes = FINETUNE_RECIPES if init == "ce" else SCRATCH_RECIPES
    rows, extras = [], {"margins": {}, "history": {}, "models": {}}
    for seed in seeds:
        with torch.random.fork_rng():
            base, _ = train_classifier(data, seed, cache=cache, **({} if ce_epochs is None else {"epochs": ce_epochs}))
            m_in, m_out = margins if margins is not None else propose_margins(base, data.train_x, data.aux_x)
            extras["margins"][seed] = (m_in, m_out)
            for label, kwargs in methods.items():
                kwargs = dict(kwargs)
                method = kwargs.pop("method")
                entry_score = kwargs.pop("score", score)
                model = copy.deepcopy(base) if init == "ce" or kwargs.get("epochs", 1) == 0 else default_model(data, seed)
                if kwargs.get("epochs", 1) != 0:
                    recipe = dict(recipes[kind], progress=False, seed=seed, m_in=m_in, m_out=m_out)
                    if finetune_epochs is not None:
                        recipe["epochs"] = finetune_epochs
                    recipe.update(kwargs)
                    if method in ("ce", "oe"):
                        recipe.pop("m_in"), recipe.pop("m_out")
                    hist = _train(model, data, method, recipe, cache)
                    extras["history"][(label, seed)] = hist
                if keep_models:
                    extras["models"][(label, seed)] = model
                res = evaluate(model, data, score=entry_score)
                for name, m in [*res["ood"].items(), ("mean", res["mean"])]:
                    rows.append({"seed": seed, "method": label, "ood": name, **m, "accuracy": res["accuracy"]})
    return pd.DataFrame(rows), extras


@torch.no_grad()
def collect_picks(model: nn.Module, data: Benchmark, sampler: str = "energy_cluster", *, n_draws: int = 50,
                  n_candidates: int = 384, n_select: int = 64, n_clusters: int | None = None, two_way: bool = True,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a sampler's picks land over many candidate draws (the model fixed, in eval mode).

    Returns ``(picked_inputs, picked_energies)`` concatenated over ``n_draws`` draws of
    ``n_candidates`` pool samples each.
    """
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    fn = get_sampler(sampler)
    xs, es = [], []
    for _ in range(n_draws):
        cand = data.aux_x[torch.randint(len(data.aux_x), (n_candidates,), generator=gen)]
        logits, feats = model(cand, return_features=True)
        e = energy(logits)
        kwargs = dict(n_select=n_select, generator=gen)
        if sampler in ("energy_cluster", "dos"):
            kwargs["n_clusters"] = n_clusters or (n_select // 2 if sampler == "energy_cluster" and two_way else n_select)
        if sampler == "energy_cluster":
            kwargs["two_way"] = two_way
        idx = fn(feats, e, **kwargs)
        xs.append(cand[idx])
        es.append(e[idx])
    model.train(was_training)
    return torch.cat(xs), torch.cat(es)


def radius_summary(model: nn.Module, data: Benchmark, eps: float, *, n: int = 200, ood: str | None = None,
                   steps: int = 10, tpr: float = 0.95) -> dict[str, float]:
    """Certified radii (E8) of correctly detected test points, capped at ``eps``, with the local
    Lipschitz estimate on ``B_eps`` and with the global bound.

    Returns medians (over ``n`` ID test points and ``n`` points of each OOD set, or of ``ood``) of the
    local-estimate radii for ID and OOD, the same for the global bound, and the ratio
    global bound / median local estimate.
    """
    t = -threshold_at_tpr(-energy(predict_logits(model, data.test_x)), tpr)
    sets = [data.ood[ood][:n]] if ood else [v[: max(1, n // len(data.ood))] for v in data.ood.values()]
    out = {}
    glob = global_lipschitz_bound(model)
    local_all = []
    for side, x in (("ID", data.test_x[:n]), ("OOD", torch.cat(sets))):
        e = energy(predict_logits(model, x))
        correct = (e <= t) if side == "ID" else (e > t)
        local = local_lipschitz(model, x, eps, steps=steps)
        local_all.append(local)
        r_local = certified_radius(e, t, local, eps=eps)[correct]
        r_glob = certified_radius(e, t, glob, eps=eps)[correct]
        out[f"median radius {side} (local)"] = float(r_local.median()) if len(r_local) else float("nan")
        out[f"median radius {side} (global)"] = float(r_glob.median()) if len(r_glob) else float("nan")
    out["global / median local"] = glob / float(torch.cat(local_all).median())
    return out


def run_or_load(out: str | os.PathLike, args: list[str]) -> dict:
    """Run ``python -m gregnb.train`` with ``args`` into ``out`` unless ``out/metrics.json`` exists (a
    finished run); an unfinished run (``out/last.pt`` without metrics) is resumed. Returns the metrics."""
    out = Path(out)
    metrics = out / "metrics.json"
    if not metrics.exists():
        train_main([*args, "--out", str(out), "--resume", "--no-progress"])
    return json.loads(metrics.read_text())
