"""OOD detection metrics, written out so the lesson can show how they work.

Every function takes ``(id_scores, ood_scores)``: two 1-D collections (NumPy arrays,
lists, or torch tensors on any device) where **HIGHER = MORE ID**. ID is the positive
class, as in the energy paper and the GReg code. Pass ``-energy`` for the energy score.
Results are fractions in [0, 1] (multiply by 100 for the paper's percentages).

The other convention (pytorch-ood, OpenOOD >= 1.5) takes OOD as positive; ask for it
with ``positive="ood"`` in :func:`fpr_at_tpr` and :func:`ood_metrics`. On the same scores
the two FPR95 readings can differ by tens of points.

AUROC does not depend on how many ID and OOD samples there are; AUPR-In and AUPR-Out do (their
precision counts the other class's samples), so report the ID:OOD ratio with them. The conventions
are written out in docs/method.md (metric conventions); the threshold is the detector's gamma (E1).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .validate import number

__all__ = ["fpr_at_tpr", "auroc", "aupr_in", "aupr_out", "ood_metrics", "threshold_at_tpr"]

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def _as_scores(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        if x.device.type == "meta":
            raise ValueError(f"{name} is on the meta device (shapes only, no values); pass scores that hold values")
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a 1-D sequence of numbers: {err}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per sample), got shape {arr.shape}; flatten it first")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; OOD metrics need at least one ID and one OOD score")
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); check the model's outputs (e.g. logits overflow)")
    return arr


def _check_pair(id_scores: ArrayLike, ood_scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return _as_scores(id_scores, "id_scores"), _as_scores(ood_scores, "ood_scores")


def _check_positive(positive: str) -> str:
    if positive not in ("id", "ood"):
        raise ValueError(f"positive must be 'id' or 'ood', got {positive!r}")
    return positive


def threshold_at_tpr(id_scores: ArrayLike, tpr: float = 0.95) -> float:
    """Largest threshold t with at least a fraction ``tpr`` of ID scores >= t.

    This is the detector's gamma (E1, docs/method.md) when scores are HIGH = ID: accept as ID when score >= t.
    """
    tpr = number("tpr", tpr, low=0.0, high=1.0, low_open=True, hint="0.95 for FPR95")
    s = np.sort(_as_scores(id_scores, "id_scores"))[::-1]
    n = s.size
    # k = smallest count whose TPR k/n reaches tpr (the same float comparison scikit-learn's ROC makes)
    k = int(np.argmax(np.arange(1, n + 1) / n >= tpr)) + 1
    return float(s[k - 1])


def fpr_at_tpr(id_scores: ArrayLike, ood_scores: ArrayLike, tpr: float = 0.95, *, positive: str = "id") -> float:
    """False-positive rate at a given true-positive rate (FPR95 for ``tpr=0.95``).

    ``positive="id"`` (default, the paper's): the fraction of OOD scores >= t, where t is the
    largest threshold that keeps at least ``tpr`` of the ID scores >= t.
    ``positive="ood"``: the mirror image: the fraction of ID samples flagged as OOD when the
    threshold catches ``tpr`` of the OOD samples.
    """
    id_s, ood_s = _check_pair(id_scores, ood_scores)
    if _check_positive(positive) == "ood":
        id_s, ood_s = -ood_s, -id_s
    t = threshold_at_tpr(id_s, tpr)
    return float(np.mean(ood_s >= t))


def auroc(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random ID sample > that of a random OOD sample),
    ties counting one half (the Mann-Whitney U statistic). Symmetric in the positive class."""
    id_s, ood_s = _check_pair(id_scores, ood_scores)
    allv = np.concatenate([id_s, ood_s])
    # average ranks handle ties; rank-sum of the ID scores gives U
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    ranks = np.empty_like(allv)
    # ranks 1..n, with ties sharing the mean rank
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, counts)
    n_id, n_ood = id_s.size, ood_s.size
    u = ranks[:n_id].sum() - n_id * (n_id + 1) / 2.0
    return float(u / (n_id * n_ood))


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision with ``pos`` as positives (higher score = more positive):
    sum over distinct thresholds of (recall step) x (precision at that threshold)."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    tp = np.cumsum(labels)
    fp = np.cumsum(1 - labels)
    # keep the last index of each run of equal scores: a threshold takes the whole tie group
    last = np.r_[np.diff(scores) != 0, True]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / pos.size
    recall_step = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_step * precision))


def aupr_in(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Area under the precision-recall curve with ID as positive (average precision).
    Depends on the ID:OOD ratio (a score that ranks at random gets about the ID share
    ``n_id / (n_id + n_ood)``); report the ratio with it."""
    id_s, ood_s = _check_pair(id_scores, ood_scores)
    return _average_precision(id_s, ood_s)


def aupr_out(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Area under the precision-recall curve with OOD as positive (scores negated).
    Depends on the ID:OOD ratio too (a score that ranks at random gets about the OOD share)."""
    id_s, ood_s = _check_pair(id_scores, ood_scores)
    return _average_precision(-ood_s, -id_s)


def ood_metrics(id_scores: ArrayLike, ood_scores: ArrayLike, tpr: float = 0.95, *, positive: str = "id") -> dict[str, float]:
    """All four metrics in one dict: ``fpr95``, ``auroc``, ``aupr_in``, ``aupr_out`` (fractions).

    ``positive`` only changes ``fpr95`` (AUROC is the same either way; the AUPRs name their
    positive class).
    """
    id_s, ood_s = _check_pair(id_scores, ood_scores)
    return {
        "fpr95": fpr_at_tpr(id_s, ood_s, tpr, positive=positive),
        "auroc": auroc(id_s, ood_s),
        "aupr_in": aupr_in(id_s, ood_s),
        "aupr_out": aupr_out(id_s, ood_s),
    }
