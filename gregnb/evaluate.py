"""Run a trained model over a benchmark and report accuracy and OOD metrics.

Scores follow :mod:`gregnb.metrics`: HIGH = ID (the energy score is negated for you).
"""
from __future__ import annotations

import torch
from torch import nn

from .data.base import Benchmark
from .metrics import ood_metrics
from .scores import score_fn

__all__ = ["predict_logits", "evaluate", "results_table"]


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048, *, features: bool = False,
                   transform=None):
    """Logits ``(N, K)`` (and penultimate features ``(N, D)`` if ``features``) in eval mode, on the CPU.
    ``transform`` (e.g. ``data.eval_transform``) is applied to each batch on the model's device."""
    if len(x) == 0:
        raise ValueError("x is empty: nothing to predict")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    outs, feats = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(dev)
        out = model(transform(xb) if transform is not None else xb, return_features=features)
        if features:
            out, h = out
            feats.append(h.float().cpu())
        outs.append(out.float().cpu())
    model.train(was_training)
    logits = torch.cat(outs)
    return (logits, torch.cat(feats)) if features else logits


def evaluate(model: nn.Module, data: Benchmark, score: str = "energy", temperature: float = 1.0,
             tpr: float = 0.95) -> dict:
    """Accuracy on ``data.test_x`` and, per OOD set, FPR95 / AUROC / AUPR-In / AUPR-Out (fractions).

    Returns ``{"accuracy": float, "ood": {name: metrics}, "mean": metrics averaged over sets}``.
    """
    fn = score_fn(score)
    tf = data.eval_transform
    id_logits = predict_logits(model, data.test_x, transform=tf)
    acc = (id_logits.argmax(1) == data.test_y).float().mean().item()
    id_s = fn(id_logits, temperature)
    per_set = {name: ood_metrics(id_s, fn(predict_logits(model, x, transform=tf), temperature), tpr)
               for name, x in data.ood.items()}
    keys = next(iter(per_set.values())).keys() if per_set else []
    mean = {k: sum(m[k] for m in per_set.values()) / len(per_set) for k in keys}
    return {"accuracy": acc, "ood": per_set, "mean": mean}


def results_table(results: dict[str, dict], metric_names=("fpr95", "auroc"), percent: bool = True):
    """A pandas DataFrame from ``{row label: evaluate(...) output}``: one column per OOD set and
    metric, plus the mean and ID accuracy. Values in % when ``percent``."""
    import pandas as pd

    rows = {}
    scale = 100.0 if percent else 1.0
    for label, res in results.items():
        row = {}
        for name, m in list(res["ood"].items()) + [("mean", res["mean"])]:
            for k in metric_names:
                row[(name, k)] = scale * m[k]
        row[("id", "accuracy")] = scale * res["accuracy"]
        rows[label] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df
