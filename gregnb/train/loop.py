"""The training loop: :func:`fit` as a short sequence of named steps (prepare the run, resume, then per epoch
draw batches, take steps, record the epoch, save a checkpoint)."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ..config import display_path, seed_everything
from ..data.base import Benchmark
from ..inference import predict_logits
from ..lipschitz import input_gradient_norm
from . import distributed
from .checks import check_call, check_checkpoint_path, check_data, check_resume
from .config import History, TrainConfig, plain_config
from .registry import METHODS, MethodSpec

__all__ = ["fit", "accuracy"]


def fit(model: nn.Module, data: Benchmark, method: str = "ce", *, device: str | torch.device | None = None,
        step_hook: Callable[[int, dict], None] | None = None, checkpoint: str | os.PathLike | None = None,
        resume: bool = False, overwrite: bool = False, checkpoint_extra: dict | None = None, **config) -> History:
    """Train ``model`` on ``data`` with a registered ``method`` and return its :class:`History`.

    Args:
        model: any module mapping (transformed) ``data.train_x`` batches to logits ``(B, K)``.
        data: a :class:`~gregnb.data.Benchmark`; methods that use outliers draw from ``data.aux_x``.
            Its ``train_transform`` / ``eval_transform`` (if any) are applied to batches on the device,
            so uint8 images held on the GPU are augmented there.
        method: a key of :data:`METHODS`.
        device: default :func:`gregnb.config.device`.
        step_hook: called after every optimiser step with ``(global_step, logs)``.
        checkpoint: a file (e.g. ``out/last.pt``) written atomically after every epoch with the model,
            optimiser, scheduler, RNG states, epoch and history.
        resume: continue from ``checkpoint`` if it exists: the result equals an uninterrupted run. Settings that
            differ from the checkpoint's are refused (listed), except ``epochs`` growing on a finished run: the
            schedule is then rebuilt for the new length (printed, and recorded as ``history.extensions``).
        overwrite: replace an existing ``checkpoint`` (start over); without it, or ``resume``, an existing
            file is refused rather than silently overwritten.
        checkpoint_extra: more entries for the checkpoint (e.g. ``{"meta": {...}}`` naming data and model).
        **config: fields of :class:`TrainConfig` (epochs, batch_size, lr, ...).

    Under ``torchrun`` (a process group initialised), each process takes its contiguous shard of every
    global batch (``batch_size`` and ``aux_batch_size`` are global) and the model is wrapped in
    DistributedDataParallel; only rank 0 writes the checkpoint.

    The history holds, per epoch: ``loss`` (mean total loss), the step logs (e.g. ``loss_ce``,
    ``train_acc``) averaged over the epoch, ``test_acc`` (eval mode, on ``data.test_x``), ``lr``,
    ``epoch_seconds`` (wall time of the epoch's training steps), for outlier methods ``aux_distinct``
    (distinct pool images trained on in the epoch, on this process: the sampler's coverage of the pool),
    for ``"greg+"`` ``candidates`` / ``picks`` (per step), for the methods with GReg's masks (``energy``, ``greg``,
    ``greg+``, ``oe+grad``) ``masked_id`` / ``masked_ood`` (the share of the ID / outlier batch the penalty's mask
    selects, a step without the term included) and ``loss_grad_id`` / ``loss_grad_ood`` (the penalty's two parts,
    adding up to ``loss_grad``; 0 on a step without the term), all per-step values averaged over the epoch
    (:func:`gregnb.losses.penalty_logs`), and, if ``log_grad_norms``, ``grad_norm_id`` / ``grad_norm_aux``.
    Same seed, same data, same device -> same weights.
    """
    cfg = TrainConfig(method=method, **config)
    run = _prepare_run(model, data, cfg, device, checkpoint, resume, overwrite)
    if resume and run.ckpt_path is not None and run.ckpt_path.exists():
        _resume(run)
    bar = tqdm(range(run.start_epoch, cfg.epochs), desc=cfg.method, disable=not cfg.progress or run.rank != 0,
               leave=False, initial=run.start_epoch, total=cfg.epochs)
    for epoch in bar:
        sums, trained_on, seconds = _fit_epoch(run, epoch, step_hook)
        _record_epoch(run, epoch, sums, trained_on, seconds)
        _save(run, epoch, checkpoint_extra)
        bar.set_postfix(loss=f"{run.history['loss'][-1]:.3f}", test_acc=f"{run.history['test_acc'][-1]:.3f}")
    model.eval()
    run.history.config, run.history.extensions = plain_config(cfg), run.extensions
    return run.history


@dataclass
class _Run:
    """Everything one call of :func:`fit` carries from step to step."""

    model: nn.Module
    train_model: nn.Module  # the model, or DDP around it
    data: Benchmark
    cfg: TrainConfig
    spec: MethodSpec
    dev: torch.device
    rank: int
    world: int
    gen: torch.Generator
    aux_per_step: int
    steps_per_epoch: int
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    ckpt_path: Path | None
    probe_id: torch.Tensor
    probe_aux: torch.Tensor | None
    history: History = field(default_factory=History)
    step: int = 0
    start_epoch: int = 0
    extensions: list = field(default_factory=list)


def _prepare_run(model, data, cfg, device, checkpoint, resume, overwrite) -> _Run:
    """Seed, place the model, check the data and the checkpoint path, build optimiser and schedule."""
    spec = METHODS[cfg.method]
    dev = check_call(model, data, device)
    rank, world = distributed.dist_info()
    gen = seed_everything(cfg.seed)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(dev)
    if cfg.channels_last and data.train_x.ndim == 4:
        model.to(memory_format=torch.channels_last)
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    check_checkpoint_path(ckpt_path, resume, overwrite, rank)
    check_data(model, data, spec, dev, world)
    aux_per_step = cfg.aux_per_step  # pool samples drawn per step
    if world > 1 and (cfg.batch_size % world or aux_per_step % world or cfg.batch_size < 2 * world):
        raise ValueError(f"batch_size ({cfg.batch_size}) and the outlier batch ({aux_per_step}) are global and must "
                         f"divide by the number of processes ({world}), with at least 2 ID samples per process")
    steps_per_epoch = math.ceil(len(data.train_x) / cfg.batch_size)
    opt = make_optimizer(model, cfg)
    probe_gen = torch.Generator().manual_seed(cfg.seed + 1)  # fixed probes for the gradient-norm curves
    probe_id = data.train_x[torch.randperm(len(data.train_x), generator=probe_gen)[:256]]
    probe_aux = None
    if data.aux_x is not None and len(data.aux_x):
        probe_aux = data.aux_x[torch.randperm(len(data.aux_x), generator=probe_gen)[:256]]
    return _Run(model, distributed.wrap(model, dev, world), data, cfg, spec, dev, rank, world, gen, aux_per_step,
                steps_per_epoch, opt, make_scheduler(opt, cfg, steps_per_epoch), ckpt_path, probe_id, probe_aux)


def _resume(run: _Run) -> None:
    """Continue from the checkpoint: weights, optimiser, schedule, history, step and RNG states."""
    state = load_checkpoint(run.ckpt_path, map_location=run.dev)
    extension = check_resume(state, run.cfg, run.ckpt_path)
    load_model_state(run.model, state, run.ckpt_path)
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.history = History({k: list(v) for k, v in state["history"].items()})
    run.step, run.start_epoch = int(state["step"]), int(state["epoch"])
    _set_rng_state(state["rng"], run.gen)
    run.extensions = list(state.get("extensions", []))
    if extension is not None:
        run.extensions.append(extension)
        _rebuild_schedule(run.opt, run.sched, run.cfg, extension, run.ckpt_path, run.step, announce=run.rank == 0)


def _prepare_batch(run: _Run, order: torch.Tensor, i: int):
    """Step ``i``'s ID batch and pool draw, this process's shard, transformed on the device; None for a
    one-sample tail (it would break BatchNorm)."""
    cfg, data, dev = run.cfg, run.data, run.dev
    idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
    if len(idx) < 2 * run.world and run.steps_per_epoch > 1:
        return None
    aux_idx = torch.randint(len(data.aux_x), (run.aux_per_step,), generator=run.gen) if run.spec.uses_aux else None
    idx, aux_idx = distributed.shard(idx, run.rank, run.world), distributed.shard(aux_idx, run.rank, run.world)
    x = data.prepare_train(data.train_x[idx].to(dev, non_blocking=True), run.gen)
    y = data.train_y[idx].to(dev, non_blocking=True)
    x_aux = data.prepare_train(data.aux_x[aux_idx].to(dev, non_blocking=True), run.gen) if aux_idx is not None else None
    if cfg.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
        x_aux = x_aux.contiguous(memory_format=torch.channels_last) if x_aux is not None else None
    return x, y, x_aux, aux_idx


def _train_step(run: _Run, epoch: int, x, y, x_aux) -> dict:
    """One optimiser step of the method; returns its logs (``picked_index`` included, if the method picks)."""
    with torch.autocast(device_type=run.dev.type, dtype=torch.bfloat16, enabled=run.cfg.amp and run.dev.type == "cuda"):
        loss, logs = run.spec.step(run.train_model, x, y, x_aux, run.cfg, run.step)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss ({loss.item()}) at step {run.step} (epoch {epoch + 1}) of method "
                                 f"{run.cfg.method!r}; lower the learning rate (now {run.sched.get_last_lr()[0]:.3g}) "
                                 f"or check the inputs. The last good checkpoint is kept"
                                 + (f" at {run.ckpt_path}" if run.ckpt_path else ""))
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.sched.step()
    run.step += 1
    return {"loss": distributed.mean_over_processes(loss.detach().float(), run.world).item(), **logs}


def _fit_epoch(run: _Run, epoch: int, step_hook) -> tuple[dict, set, float]:
    """All steps of one epoch: summed logs, the distinct pool images trained on, and the wall time."""
    t0 = time.perf_counter()
    run.model.train()
    sums: dict[str, float] = {}
    trained_on: set[int] = set()  # distinct pool images trained on this epoch (the sampler's coverage)
    order = torch.randperm(len(run.data.train_x), generator=run.gen)
    for i in range(run.steps_per_epoch):
        batch = _prepare_batch(run, order, i)
        if batch is None:
            continue
        x, y, x_aux, aux_idx = batch
        logs = _train_step(run, epoch, x, y, x_aux)
        picked = logs.pop("picked_index", None)  # a sampler's picks, as positions in x_aux
        if aux_idx is not None:
            trained_on.update((aux_idx[picked.cpu()] if picked is not None else aux_idx).tolist())
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        sums["_n"] = sums.get("_n", 0.0) + 1
        if step_hook is not None:
            step_hook(run.step, logs)
    return sums, trained_on, time.perf_counter() - t0


def _record_epoch(run: _Run, epoch: int, sums: dict, trained_on: set, seconds: float) -> None:
    """Epoch means of the step logs, then what is measured after the epoch (test accuracy, gradient norms)."""
    h, data = run.history, run.data
    if "_n" not in sums:  # never record (or checkpoint) an epoch in which nothing was trained
        raise RuntimeError(f"epoch {epoch + 1} ran no training step ({len(data.train_x)} samples, batch_size "
                           f"{run.cfg.batch_size}, {run.world} processes)")
    n = sums.pop("_n")
    for k, v in sums.items():
        h.setdefault(k, []).append(v / n)
    h.setdefault("lr", []).append(run.sched.get_last_lr()[0])
    if run.spec.uses_aux:
        h.setdefault("aux_distinct", []).append(float(len(trained_on)))
    h.setdefault("epoch_seconds", []).append(seconds)  # training steps only, not the measurements below
    h.setdefault("test_acc", []).append(accuracy(run.model, data.test_x, data.test_y, transform=data.eval_transform))
    if run.cfg.log_grad_norms:  # as in the paper's figure of input-gradient norms over training
        h.setdefault("grad_norm_id", []).append(
            input_gradient_norm(run.model, data.prepare_eval(run.probe_id.to(run.dev))).mean().item())
        if run.probe_aux is not None:
            h.setdefault("grad_norm_aux", []).append(
                input_gradient_norm(run.model, data.prepare_eval(run.probe_aux.to(run.dev))).mean().item())


def _save(run: _Run, epoch: int, extra: dict | None) -> None:
    """The checkpoint after each epoch (rank 0 only), written atomically."""
    if run.ckpt_path is None or run.rank != 0:
        return
    save_checkpoint({"model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
                     "scheduler": run.sched.state_dict(), "epoch": epoch + 1, "step": run.step,
                     "history": {k: list(v) for k, v in run.history.items()}, "rng": _rng_state(run.gen),
                     "config": plain_config(run.cfg), "extensions": run.extensions, **(extra or {})}, run.ckpt_path)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024, transform=None) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode, as a fraction (``transform``: e.g. normalisation)."""
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    logits = predict_logits(model, x, batch_size, transform=transform)
    return (logits.argmax(1) == torch.as_tensor(y).cpu()).float().mean().item()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":  # per step, to zero at the last step (as the energy paper's fine-tune)
        fn = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))  # noqa: E731
    elif cfg.schedule == "multistep":  # x gamma at each milestone epoch (GReg+: 0.1 -> 0.01 after epoch 50)
        fn = lambda s: cfg.gamma ** sum(s >= m * steps_per_epoch for m in cfg.milestones)  # noqa: E731
    else:
        fn = lambda s: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)


def _rng_state(gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["gen"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rebuild_schedule(opt, sched, cfg: TrainConfig, ext: dict, path: Path, step: int, announce: bool) -> None:
    """Extending a finished run: the learning rate from the schedule rebuilt for the new length, said aloud."""
    for group, base, fn in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
        group["lr"] = base * fn(step)
    lr = opt.param_groups[0]["lr"]
    if cfg.schedule == "cosine":
        how = (f"the cosine schedule is rebuilt for {ext['to_epochs']} epochs: the learning rate goes back up to "
               f"{lr:.3g} at step {step} and anneals to 0 by epoch {ext['to_epochs']}")
    else:
        how = f"the {cfg.schedule} schedule continues (learning rate {lr:.3g})"
    if announce:
        print(f"{display_path(path)}: extending a finished {ext['from_epochs']}-epoch run to {ext['to_epochs']} epochs; {how}. The "
              f"result differs from a {ext['to_epochs']}-epoch run from scratch; the checkpoint records the extension.",
              flush=True)
