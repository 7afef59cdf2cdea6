"""Pre-flight checks of a training run: what would otherwise fail deep in torch, after a whole epoch, or
silently (a resume with other settings than the checkpoint's)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import validate
from ..checkpoint import CheckpointError, check_writable
from ..config import device as default_device
from ..data.base import Benchmark
from .config import TrainConfig, plain_config
from .registry import MethodSpec

__all__ = ["check_call", "check_data", "check_checkpoint_path", "check_resume"]


def check_call(model, data, device) -> torch.device:
    """What a call of :func:`~gregnb.train.fit` is given, checked before anything moves: not inside
    ``torch.inference_mode()``, a module that holds values, a :class:`~gregnb.data.Benchmark`, a device this machine
    has. Returns the device (default: :func:`gregnb.config.device`)."""
    validate.no_inference_mode("training (fit)")
    validate.module("model", model)
    if not isinstance(data, Benchmark):
        raise TypeError(f"data must be a gregnb.data.Benchmark (e.g. gregnb.data.load_dataset('digits')), got "
                        f"{validate.describe(data)}; wrap tensors as Benchmark(name, train_x, train_y, test_x, "
                        f"test_y, aux_x, ood, n_classes)")
    return validate.device(device) if device is not None else default_device()


def check_data(model: nn.Module, data: Benchmark, spec: MethodSpec, dev: torch.device, world: int) -> None:
    """Pre-flight: what would otherwise fail deep in torch, or only after a whole epoch."""
    parts = ("train_x", "train_y", "test_x", "test_y") + (("aux_x",) if spec.uses_aux else ())
    for name in parts:
        t = getattr(data, name, None)
        if not isinstance(t, torch.Tensor):
            hint = (" (convert with torch.from_numpy)" if isinstance(t, np.ndarray) else
                    " (convert with torch.tensor)" if isinstance(t, (list, tuple)) else "")
            raise TypeError(f"data.{name} must be a torch tensor, got {type(t).__name__}{hint}")
    if spec.uses_aux and len(data.aux_x) == 0:
        raise ValueError("this method trains with auxiliary outliers but data.aux_x is empty; "
                         "use a benchmark with a pool or method='ce'")
    for part in ("train", "test"):
        x, y = getattr(data, f"{part}_x"), getattr(data, f"{part}_y")
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(f"data.{part}_x and data.{part}_y must be non-empty and of equal length, "
                             f"got {len(x)} and {len(y)}")
        if y.ndim != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"data.{part}_y must be a 1-D tensor of integer class labels, got {y.dtype} of shape "
                             f"{tuple(y.shape)}; convert with .long()")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= data.n_classes:
            raise ValueError(f"data.{part}_y holds labels in [{lo}, {hi}], outside [0, n_classes) = "
                             f"[0, {data.n_classes}); fix the labels or data.n_classes")
    if len(data.train_x) < 2 * world:
        raise ValueError(f"data.train_x has {len(data.train_x)} samples; training needs at least 2 per process "
                         f"(BatchNorm)")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for name in ("train_x", "test_x") + (("aux_x",) if spec.uses_aux else ()):
        xb = data.prepare_eval(getattr(data, name)[:2].to(dev))
        if xb.dtype != dtype:
            hint = (" (convert images to float in [0, 1]: x.float() / 255, or give the benchmark an eval_transform)"
                    if not xb.is_floating_point() else f" (convert with .to({dtype}))")
            raise ValueError(f"data.{name} reaches the model as {xb.dtype}, but its weights are {dtype}{hint}")
    _check_outputs(model, data)


def _check_outputs(model: nn.Module, data: Benchmark) -> None:
    """The model gives at least one logit per class, as its ``n_classes`` or its head ``fc`` says (gregnb's models
    have both; a model with neither is not checked here). Nothing is run: a model sees only its training batches."""
    k = getattr(model, "n_classes", None)
    if not isinstance(k, int) and isinstance(getattr(model, "fc", None), nn.Linear):
        k = model.fc.out_features
    if isinstance(k, int) and k < data.n_classes:
        hi = int(max(data.train_y.max(), data.test_y.max()))
        raise ValueError(f"the model gives {k} logits per sample, but the data has n_classes = {data.n_classes} "
                         f"(labels up to {hi}); build the model with n_classes={data.n_classes}")


def check_checkpoint_path(path: Path | None, resume: bool, overwrite: bool, rank: int) -> None:
    if path is None:
        return
    if resume and overwrite:
        raise ValueError("resume=True continues the checkpoint, overwrite=True replaces it: choose one")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder; pass a file inside it, e.g. {path / 'last.pt'}")
    if path.exists() and not resume and not overwrite:
        raise FileExistsError(f"{path} already holds a run: pass resume=True (--resume) to continue it, "
                              f"overwrite=True (--overwrite) to start over and replace it, or another path (--out)")
    if rank == 0:
        check_writable(path.parent, f"checkpoint {path.name}")


#: settings that do not change what is trained (a resume may change them)
_NOT_RESULT = ("progress",)
_TRAINING_STATE = ("model", "optimizer", "scheduler", "history", "step", "epoch", "rng", "config")


def check_resume(state: dict, cfg: TrainConfig, path: Path) -> dict | None:
    """Refuse a resume whose settings differ from the checkpoint's (listing them); allow only ``epochs`` to grow
    on a finished run, returned as ``{"at_epoch", "from_epochs", "to_epochs"}``."""
    missing = [k for k in _TRAINING_STATE if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint (it lacks {missing}), so it cannot be resumed; "
                              f"start from its weights with --init (fine-tuning), or use another --out")
    saved, now = state["config"], plain_config(cfg)
    if saved.get("method") != cfg.method:
        raise ValueError(f"{path} was written by method {saved.get('method')!r}, "
                         f"not {cfg.method!r}; use another --out folder or the same method")
    done, old_epochs = int(state["epoch"]), int(saved.get("epochs", cfg.epochs))
    diffs = {k: (saved[k], v) for k, v in now.items()
             if k in saved and k not in _NOT_RESULT + ("epochs",) and saved[k] != v}
    extension, hint = None, ""
    if cfg.epochs != old_epochs:
        if done >= old_epochs and cfg.epochs > old_epochs:
            extension = {"at_epoch": done, "from_epochs": old_epochs, "to_epochs": cfg.epochs}
        else:
            diffs["epochs"] = (old_epochs, cfg.epochs)
            hint = (f" (epochs may only grow once a run is finished; this one stopped after epoch {done} of "
                    f"{old_epochs}: finish it with epochs={old_epochs} first)" if done < old_epochs else
                    " (a finished run cannot be shortened)")
    if diffs:
        listing = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in diffs.items())
        raise ValueError(f"cannot resume {path} with other settings than it was trained with: {listing}{hint}. "
                         f"Resume with the checkpoint's settings, or start a new run (another --out, or "
                         f"--overwrite / overwrite=True to replace this one)")
    return extension
