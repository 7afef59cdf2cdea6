"""Choosing a setting without looking at the test OOD sets, and reading a sweep over it.

Choosing the gradient weight (or margins) by test FPR95 tunes the method to the very sets it is then
judged on: the reported number is optimistic, and the comparison with a baseline that was not tuned
that way is unfair. The protocol here: train each candidate setting over seeds, evaluate every model on
a **validation** OOD set from sources disjoint from the pool and the test sets
(:func:`gregnb.data.validation.digits_validation_ood`), pick the setting with the lowest mean validation
FPR95 (:func:`select_setting`), and only then look at the test sets.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .data.base import Benchmark
from .evaluate import evaluate, predict_logits
from .metrics import fpr_at_tpr
from .scores import energy

__all__ = ["evaluate_models_on", "select_setting", "plot_sweep", "fpr95_by_region"]


def evaluate_models_on(models: Mapping[tuple[str, int], nn.Module], data: Benchmark,
                       ood: Mapping[str, torch.Tensor], score: str = "energy"):
    """Evaluate ``{(label, seed): model}`` (e.g. ``compare_methods(..., keep_models=True)[1]["models"]``)
    against the ID test set of ``data`` and the OOD sets ``ood`` instead of ``data.ood``.

    Returns a long DataFrame like :func:`gregnb.experiments.compare_methods`': seed, method, ood (set or
    "mean"), fpr95, auroc, aupr_in, aupr_out, accuracy.
    """
    import pandas as pd

    if not ood:
        raise ValueError("ood must name at least one OOD set, e.g. {'validation': digits_validation_ood()}")
    swapped = dataclasses.replace(data, ood=dict(ood))
    rows = []
    for (label, seed), model in models.items():
        res = evaluate(model, swapped, score=score)
        for name, m in [*res["ood"].items(), ("mean", res["mean"])]:
            rows.append({"seed": seed, "method": label, "ood": name, **m, "accuracy": res["accuracy"]})
    return pd.DataFrame(rows)


def select_setting(val_df, candidates: Sequence[str], value: str = "fpr95", lower_is_better: bool = True) -> str:
    """The candidate row with the best mean ``value`` over seeds on the validation DataFrame's "mean" rows.
    Ties go to the earlier candidate (list them from the weakest setting up)."""
    means = val_df[val_df["ood"] == "mean"].groupby("method")[value].mean()
    missing = [c for c in candidates if c not in means.index]
    if missing:
        raise ValueError(f"no validation results for {missing}; have {sorted(means.index)}")
    scores = [means[c] if lower_is_better else -means[c] for c in candidates]
    return candidates[int(np.argmin(scores))]


def plot_sweep(ax, df, settings: Mapping[str, float], *, baseline: str | None = None, extra: Mapping[str, float] = (),
               value: str = "fpr95", label: str = "", color: str = "tab:red", xlabel: str = "λ∇ (paper convention)"):
    """``value`` (mean over OOD sets, %) against a setting on a log axis, with a mean ± std band over seeds.

    ``settings``: row label -> x position; ``baseline``: a row drawn as a horizontal line with its band
    (e.g. the energy loss); ``extra``: rows drawn as single points with error bars at their own x (e.g. the
    authors' convention at its effective weight).
    """
    stats = df[df["ood"] == "mean"].groupby("method")[value].agg(["mean", "std"]).fillna(0.0) * 100
    xs = np.array(list(settings.values()), float)
    order = np.argsort(xs)
    m = np.array([stats.loc[k, "mean"] for k in settings])[order]
    s = np.array([stats.loc[k, "std"] for k in settings])[order]
    ax.plot(xs[order], m, "o-", color=color, label=label or "GReg")
    ax.fill_between(xs[order], m - s, m + s, color=color, alpha=0.2)
    if baseline is not None:
        b, bs = stats.loc[baseline, "mean"], stats.loc[baseline, "std"]
        ax.axhline(b, color="0.3", ls="--", label=baseline)
        ax.axhspan(b - bs, b + bs, color="0.5", alpha=0.15)
    for name, x in dict(extra).items():
        ax.errorbar([x], [stats.loc[name, "mean"]], yerr=[stats.loc[name, "std"]], fmt="s", color="k", label=name)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"mean {value.upper()} (%)" if value == "fpr95" else f"mean {value} (%)")
    ax.legend(fontsize=7)
    return ax


@torch.no_grad()
def fpr95_by_region(model: nn.Module, data: Benchmark, covered, tpr: float = 0.95) -> dict[str, float]:
    """FPR95 of the energy score separately on the OOD test points inside and outside a region.

    ``covered(x) -> bool tensor`` marks the OOD test points of the region the training pool reached (e.g.
    ``lambda x: x[:, 0] < 0`` for a pool on the left half of the plane). The threshold is the usual one,
    from the ID test set. Returns ``{"covered": fpr, "uncovered": fpr, "n_covered": n, "n_uncovered": n}``
    (NaN for an empty side).
    """
    id_s = -energy(predict_logits(model, data.test_x, transform=data.eval_transform))
    x = torch.cat(list(data.ood.values()))
    ood_s = -energy(predict_logits(model, x, transform=data.eval_transform))
    mask = torch.as_tensor(covered(x), dtype=torch.bool)
    if mask.shape != ood_s.shape:
        raise ValueError(f"covered(x) must return one bool per OOD point ({len(x)}), got shape {tuple(mask.shape)}")
    out = {}
    for name, sel in (("covered", mask), ("uncovered", ~mask)):
        out[name] = fpr_at_tpr(id_s, ood_s[sel], tpr) if sel.any() else float("nan")
        out[f"n_{name}"] = int(sel.sum())
    return out
