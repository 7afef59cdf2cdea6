"""Running a model for inference: eval mode (the one way to switch and restore it), inputs a model can take,
and batched logits."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .validate import module, whole

__all__ = ["eval_mode", "as_model_input", "predict_logits"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model):`` runs the block with ``model.eval()`` (BatchNorm uses its running
    statistics, dropout is off) and restores the model's previous mode afterwards, also on an error.
    Gradients stay enabled: combine with ``torch.no_grad()`` where none are needed."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def as_model_input(x, model: nn.Module, name: str = "x", transform=None) -> torch.Tensor:
    """``x`` as a tensor ``model`` can take (after ``transform``, if given): a NumPy array becomes a tensor and
    floating inputs take the dtype of the model's weights (float64 -> float32); integer images without a
    transform, an empty or a non-numeric ``x`` raise a ValueError saying what to pass instead (as does a model
    whose weights hold no values: the meta device)."""
    module("model", model)
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor or an array of numbers, got {type(x).__name__}") from None
    if x.device.type == "meta":
        raise ValueError(f"{name} is on the meta device (a shape, no values); pass a tensor that holds values")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): pass at least one sample, shape (N, ...)")
    if transform is None:
        if not x.is_floating_point():
            raise ValueError(f"{name} holds {x.dtype} values and no transform is given: convert images to float in "
                             f"[0, 1] (x.float() / 255), or pass transform=data.eval_transform")
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        if x.dtype != dtype:
            x = x.to(dtype)
    return x


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048, *, features: bool = False,
                   transform=None):
    """Logits ``(N, K)`` (and penultimate features ``(N, D)`` if ``features``) in eval mode, on the CPU.
    ``transform`` (e.g. ``data.eval_transform``) is applied to each batch on the model's device."""
    batch_size = whole("batch_size", batch_size)
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be a function of a batch (e.g. data.eval_transform) or None, got {transform!r}")
    x = as_model_input(x, model, "x", transform)
    dev = next(model.parameters()).device
    outs, feats = [], []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev)
            out = _run(model, transform(xb) if transform is not None else xb, features, first=i == 0)
            if features:
                out, h = out
                feats.append(h.float().cpu())
            outs.append(out.float().cpu())
    logits = torch.cat(outs)
    return (logits, torch.cat(feats)) if features else logits


def _run(model: nn.Module, xb: torch.Tensor, features: bool, first: bool):
    """``model(xb)``; on the first batch, an input the model cannot take is reported with its shape and dtype."""
    if not first:
        return model(xb, return_features=features)
    try:
        return model(xb, return_features=features)
    except (RuntimeError, IndexError) as err:
        if isinstance(err, torch.cuda.OutOfMemoryError):
            raise
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"the model cannot run on inputs of shape {tuple(xb.shape)} and dtype {xb.dtype} "
                         f"({first_line}); pass inputs of the shape it was built for, (N, ...) with one sample "
                         f"per row") from err
