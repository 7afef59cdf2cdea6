"""Small experiment helpers: train a default model for a benchmark and repeat a measurement over
seeds, reporting mean ± std (the house rule: every claim comes with its spread).
Equation labels such as (E8) and claim numbers refer to docs/method.md."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .cache import cached_fit_many
from .config import display_path, seed_everything
from .data.base import Benchmark
from .evaluate import evaluate, predict_logits
from .inference import eval_mode
from .losses import propose_margins
from .models import MLP, SmallCNN
from .presets import CE_RECIPES, FINETUNE_RECIPES, SCRATCH_RECIPES  # the one source of the chapters' recipes
from .sampling import kmeans, plan_selection
from .scores import energy
from .train import History, TrainConfig
from .train import main as train_main
from .train.cli import requested_pool, requested_run

__all__ = ["default_model", "train_classifier", "train_classifiers", "over_seeds", "mean_std_table", "compare_scores",
           "compare_methods", "FINETUNE_RECIPES", "collect_picks", "pick_coverage", "paired_verdict", "history_means",
           "run_or_load"]


def default_model(data: Benchmark, seed: int = 0) -> nn.Module:
    """The chapters' model for a benchmark: an MLP for 2-D inputs, the small CNN for 8x8 images.
    Initialised from ``seed``."""
    seed_everything(seed)
    if data.input_shape == (2,):
        return MLP(2, data.n_classes, hidden=(64, 64))
    if len(data.input_shape) == 3:
        return SmallCNN(data.n_classes, in_channels=data.input_shape[0])
    raise ValueError(f"no default model for inputs of shape {data.input_shape}; build one from gregnb.models")


def train_classifier(data: Benchmark, seed: int = 0, method: str = "ce", *, cache: bool = True,
                     **overrides) -> tuple[nn.Module, History]:
    """Train :func:`default_model` on ``data`` with a sensible recipe; ``overrides`` change it.
    With ``cache``, an identical earlier run is loaded from ``data/models`` instead (see :mod:`gregnb.cache`)."""
    model = default_model(data, seed)
    return model, _train(model, data, method, _ce_recipe(data, seed, overrides), cache)


def train_classifiers(data: Benchmark, seeds: Iterable[int], method: str = "ce", *, cache: bool = True,
                      **overrides) -> list[tuple[nn.Module, History]]:
    """:func:`train_classifier` for several seeds, trained together (:func:`gregnb.train.fit_many`); each model
    equals the one :func:`train_classifier` gives for its seed (and shares its cache file)."""
    seeds = list(seeds)
    models = [default_model(data, s) for s in seeds]
    recipes = [_ce_recipe(data, s, overrides) for s in seeds]
    return list(zip(models, _train_many(models, data, [method] * len(seeds), recipes, cache, desc=f"{method} x seeds")))


def _ce_recipe(data: Benchmark, seed: int, overrides: dict) -> dict:
    recipe = dict(CE_RECIPES["toy" if data.input_shape == (2,) else "digits"])
    recipe.update(progress=False, seed=seed)
    recipe.update(overrides)
    return recipe


def _settings(method: str, recipe: dict) -> dict:
    """The cache key's settings: every setting, defaults filled in (a run spelled two ways is trained once)."""
    full = dataclasses.asdict(TrainConfig(**recipe))
    return {**{k: v for k, v in full.items() if k != "progress"}, "method": method}


def _train(model: nn.Module, data: Benchmark, method: str, recipe: dict, cache: bool) -> History:
    """One model, trained as :func:`_train_many` trains each (on one CPU thread), so a cache file holds the same
    weights whichever of the two made it."""
    return _train_many([model], data, [method], [recipe], cache, desc=method)[0]


def _train_many(models: list[nn.Module], data: Benchmark, methods: list[str], recipes: list[dict], cache: bool,
                desc: str = "training") -> list[History]:
    """Train ``models[i]`` with ``methods[i]`` and ``recipes[i]`` (as :func:`_train`), the uncached ones together
    with :func:`gregnb.train.fit_many` under one progress bar (with the expected time)."""
    return cached_fit_many(models, data, [{**r, "method": m} for m, r in zip(methods, recipes)],
                           [_settings(m, r) for m, r in zip(methods, recipes)] if cache else None, desc=desc)


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


def paired_verdict(df, a: str, b: str, value: str = "fpr95", *, column: str = "method", lower_is_better: bool = True,
                   ood: str = "mean", percent: bool = True) -> dict:
    """Does row ``a`` beat row ``b``? Both were run on the same seeds (a paired comparison).

    Returns ``{"a", "b", "values_a", "values_b" (per seed, in seed order), "mean_a", "std_a", "mean_b", "std_b",
    "better", "effect", "wins", "seeds", "verdict", "text"}``: ``effect`` is the
    :class:`~gregnb.findings.stats.Effect` of the per-seed differences in ``a``'s favour (in points when
    ``percent``: ``value`` is a fraction); ``verdict`` follows its 95 % interval ("holds" above 0, "does not hold" below,
    "inconclusive" across); ``wins`` = seeds where ``a`` is better; ``text`` one line with the numbers in percent.
    """
    from .findings.stats import Effect, sign_test_p

    if not hasattr(df, "pivot_table") or any(c not in df for c in ("seed", column, value)) or a == b:
        raise ValueError(f"df must be a pandas DataFrame with columns 'seed', {column!r} and {value!r}, and a, b two "
                         f"different rows of {column!r} (got {a!r}, {b!r}); got df={type(df).__name__}"
                         + (f" with columns {list(df.columns)}" if hasattr(df, "columns") else ""))
    rows = df[df["ood"] == ood] if "ood" in df else df
    wide = rows.pivot_table(index="seed", columns=column, values=value)
    for name in (a, b):
        if name not in wide:
            raise ValueError(f"no rows named {name!r} in column {column!r}; have {sorted(wide.columns)}")
    missing = wide[[a, b]].isna().any(axis=1)
    if missing.any():   # a seed without both values cannot be paired: say so rather than shrink n silently
        import warnings

        warnings.warn(f"paired_verdict: seeds {sorted(int(s) for s in wide.index[missing])} lack a value of {value!r} "
                      f"for {a!r} or {b!r} and are left out of the comparison", stacklevel=2)
    wide = wide[[a, b]].dropna()
    if wide.empty:
        raise ValueError(f"rows {a!r} and {b!r} share no seed with a value of {value!r}: nothing to pair")
    n = len(wide)
    better = "lower" if lower_is_better else "higher"
    diff = (wide[b] - wide[a]) if lower_is_better else (wide[a] - wide[b])
    scale, unit = (100.0, "%") if percent else (1.0, "")
    effect = Effect.from_differences(diff, unit="points" if percent else "", better=better, scale=scale)
    out = {"a": a, "b": b, "values_a": [float(v) for v in wide[a]], "values_b": [float(v) for v in wide[b]],
           "mean_a": float(wide[a].mean()), "std_a": float(wide[a].std(ddof=1)) if n > 1 else 0.0,
           "mean_b": float(wide[b].mean()), "std_b": float(wide[b].std(ddof=1)) if n > 1 else 0.0,
           "better": better, "effect": effect, "wins": effect.wins, "seeds": n, "verdict": effect.verdict()}
    p = float(sign_test_p(effect.wins, n))
    a_text, b_text = (f"{scale * out[f'mean_{k}']:.3g} ± {scale * out[f'std_{k}']:.2g}{unit}" for k in "ab")
    out["text"] = (f"{a} vs {b}, {value}: {a_text} vs {b_text}; {a} {effect.text()}; "
                   f"{effect.wins}/{n} seeds, sign test p = {p:.2g} ({out['verdict']})")
    return out


def history_means(histories, keys: Iterable[str], rows: Iterable[str] | None = None):
    """The training-long mean of some step logs, one row per run: ``histories`` maps ``(label, seed)`` to a
    :class:`~gregnb.train.History` (``compare_methods(...)[1]["history"]``); each of ``keys`` (e.g. "masked_ood",
    "loss_grad") is averaged over the run's epochs, themselves means over their steps. ``rows``: the labels to keep
    (default all). Returns a DataFrame with seed, method and one column per key, ready for
    :func:`paired_verdict` (``value=key``)."""
    import pandas as pd

    keys, keep = list(keys), None if rows is None else set(rows)
    out = []
    for (label, seed), h in histories.items():
        if keep is not None and label not in keep:
            continue
        missing = [k for k in keys if k not in h]
        if missing:
            raise ValueError(f"the history of {label!r} (seed {seed}) has no {missing}; it logs {sorted(h)}")
        out.append({"seed": seed, "method": label, **{k: float(np.mean(h[k])) for k in keys}})
    if not out:
        raise ValueError(f"no histories left to tabulate (rows {sorted(keep) if keep is not None else 'all'})")
    return pd.DataFrame(out)


def compare_scores(data: Benchmark, seeds: Iterable[int], scores=("msp", "max_logit", "energy"),
                   temperature: float = 1.0, **train_overrides):
    """Train one "ce" classifier per seed and evaluate each post-hoc score on every OOD set.

    Returns a long DataFrame: seed, score, ood (set name or "mean"), fpr95, auroc, aupr_in, aupr_out, accuracy.
    """

    seeds = list(seeds)
    with torch.random.fork_rng():
        models = dict(zip(seeds, (m for m, _ in train_classifiers(data, seeds, **train_overrides))))

    def run(seed: int):
        model = models[seed]
        for score in scores:
            res = evaluate(model, data, score=score, temperature=temperature)
            for name, m in [*res["ood"].items(), ("mean", res["mean"])]:
                yield {"score": score, "ood": name, **m, "accuracy": res["accuracy"]}

    with torch.random.fork_rng():
        return over_seeds(run, seeds)


def compare_methods(data: Benchmark, methods: dict[str, dict], seeds: Iterable[int], *, ce_epochs: int | None = None,
                    finetune_epochs: int | None = None, score: str = "energy", keep_models: bool = False,
                    cache: bool = True, init: str = "ce", margins: tuple[float, float] | None = None):
    """For each seed: train a "ce" model, propose margins from it, then fine-tune a copy with every
    entry of ``methods`` (label -> ``fit`` keyword arguments, e.g. ``{"GReg": dict(method="greg")}``;
    an entry with ``method="ce"`` and ``epochs=0`` keeps the "ce" model as it is; an entry's
    ``score`` overrides the score it is evaluated with, e.g. ``dict(method="ce", epochs=0, score="msp")``).

    ``init="scratch"`` trains each method from a fresh :func:`default_model` instead (same seed);
    ``margins`` fixes ``(m_in, m_out)`` instead of proposing them from the "ce" model.

    The seeds' "ce" models, then all fine-tunes, are trained together (:func:`gregnb.train.fit_many`: each equals
    its single run to floating-point tolerance and is cached as one) under one progress bar with the expected
    time; cached runs are loaded and only the missing ones train.

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
    seeds = list(seeds)
    with torch.random.fork_rng():
        ce = {} if ce_epochs is None else {"epochs": ce_epochs}
        bases = dict(zip(seeds, (m for m, _ in train_classifiers(data, seeds, cache=cache, **ce))))
        runs, jobs = [], []  # (seed, label, model, score) in the table's order; (model, method, recipe, label, seed)
        for seed in seeds:
            base = bases[seed]
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
                    jobs.append((model, method, recipe, label, seed))
                runs.append((seed, label, model, entry_score))
        if jobs:
            hists = _train_many([j[0] for j in jobs], data, [j[1] for j in jobs], [j[2] for j in jobs], cache,
                                desc=f"{len(methods)} methods x {len(seeds)} seeds")
            extras["history"].update({(j[3], j[4]): h for j, h in zip(jobs, hists)})
        for seed, label, model, entry_score in runs:
            if keep_models:
                extras["models"][(label, seed)] = model
            res = evaluate(model, data, score=entry_score)
            for name, m in [*res["ood"].items(), ("mean", res["mean"])]:
                rows.append({"seed": seed, "method": label, "ood": name, **m, "accuracy": res["accuracy"]})
    return pd.DataFrame(rows), extras


@torch.no_grad()
def collect_picks(model: nn.Module, data: Benchmark, sampler: str = "energy_cluster", *, n_draws: int = 50,
                  batch_size: int = 64, seed: int = 0, **plan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where a sampler's picks land over many candidate draws (the model fixed, in eval mode).

    Each draw is one training step's selection, through the same :func:`gregnb.sampling.plan_selection`
    as :func:`gregnb.train.fit` (``plan``: ``two_way``, ``n_clusters``, ``window``, ``candidate_factor``,
    ``n_picks``), so the figures show the regime the training runs use.

    Returns ``(picked_inputs, picked_energies, picked_pool_indices)`` concatenated over ``n_draws`` draws.
    """
    selection = plan_selection(sampler, batch_size, **plan)
    gen = torch.Generator().manual_seed(seed)
    xs, es, ids = [], [], []
    with eval_mode(model):
        for _ in range(n_draws):
            pool_idx = torch.randint(len(data.aux_x), (selection.n_candidates,), generator=gen)
            cand = data.aux_x[pool_idx]
            logits, feats = model(cand, return_features=True)
            e = energy(logits)
            idx = selection.select(feats, e, generator=gen)
            xs.append(cand[idx])
            es.append(e[idx])
            ids.append(pool_idx[idx.cpu()])
    return torch.cat(xs), torch.cat(es), torch.cat(ids)


def pick_coverage(model: nn.Module, data: Benchmark, picks: torch.Tensor, *, n_pool: int = 2000,
                  n_cells: int = 50, seed: int = 0) -> dict[str, float]:
    """How much of the pool's feature space a set of picked inputs covers.

    The pool (``n_pool`` random pool images) is cut into ``n_cells`` k-means cells of its normalised
    penultimate features. Returns ``cells hit`` (share of cells holding at least one pick; 1 = every region
    of the pool is represented) and ``mean distance`` (mean distance from a pool point to its nearest pick in
    normalised feature space; lower = better covered).
    """
    gen = torch.Generator().manual_seed(seed)
    pool = data.aux_x[torch.randperm(len(data.aux_x), generator=gen)[:n_pool]]
    _, f_pool = predict_logits(model, pool, features=True)
    _, f_pick = predict_logits(model, picks, features=True)
    f_pool = f_pool / f_pool.norm(dim=1, keepdim=True).clamp_min(1e-12)
    f_pick = f_pick / f_pick.norm(dim=1, keepdim=True).clamp_min(1e-12)
    _, centres = kmeans(f_pool, min(n_cells, len(f_pool)), generator=gen)
    hit = torch.cdist(f_pick, centres).argmin(1).unique()
    return {"cells hit": len(hit) / len(centres), "mean distance": float(torch.cdist(f_pool, f_pick).min(1).values.mean())}


def run_or_load(out: str | os.PathLike, args: list[str]) -> dict:
    """Run ``python -m gregnb.train`` with ``args`` into ``out`` unless ``out/metrics.json`` exists (a
    finished run); an unfinished run (``out/last.pt`` without metrics) is resumed. Returns the metrics.

    A finished run made with other settings (a preset changed since, other flags, or another outlier pool: other
    pool flags, or other images in the pool file) is not reused: it is moved aside to ``out`` + ``-old-<time>``
    (kept, not deleted), with a message, and the run is made again."""
    out = Path(out)
    metrics = out / "metrics.json"
    if metrics.exists():
        done = json.loads(metrics.read_text())
        argv = [*args, "--out", str(out)]
        wanted, meta = requested_run(argv)
        recorded = done.get("meta", {})
        # the pool counts as a setting (another --data-root / --aux / --max-aux, or a pool file whose images
        # changed); it is loaded only when the finished run recorded its size or hash
        meta.update(requested_pool(argv, load="pool_size" in recorded or "pool_hash" in recorded))
        # only what the finished run recorded is compared: a metrics.json written before a field was recorded
        # (no pool fields, say) is reused, not thrown away
        ran = {**done.get("settings", {}), **{k: recorded[k] for k in meta if k in recorded}}
        differ = {k: (ran[k], v) for k, v in {**wanted, **meta}.items() if k in ran and ran[k] != v}
        if not differ:
            return done
        aside = out.with_name(f"{out.name}-old-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
        print(f"{display_path(out)} holds a run with other settings ("
              + ", ".join(f"{k} {a!r}, now {b!r}" for k, (a, b) in differ.items())
              + f"): moved it to {display_path(aside)} and training again")
    if not metrics.exists():
        train_main([*args, "--out", str(out), "--resume", "--no-progress"])
    return json.loads(metrics.read_text())
