"""One training loop for every method.

A *method* is a step function registered in :data:`METHODS`: it receives the model, an ID
batch and (if the method uses outliers) an auxiliary batch drawn from the pool, and returns
the loss to minimise plus a dict of numbers to log. :func:`fit` does the rest: seeding,
batching, the optimiser and schedule, device placement, progress bars and a per-epoch history.

Registered methods:

* ``"ce"``: cross-entropy only (no outliers).
* ``"oe"``: Outlier Exposure, ``CE + lambda_oe * oe_loss`` (Hendrycks et al.; lambda_oe = 0.5).
* ``"energy"``: ``CE + lambda_s * L_S``, the energy margin loss (Liu et al.; lambda_s = 0.1).
* ``"greg"``: ``CE + lambda_s * L_S + lambda_grad * L_grad``, GReg (method.md E7).
* ``"oe+grad"``: Outlier Exposure plus GReg's gradient term (the paper's "OE + gradient" row).
* ``"greg+"``: GReg with energy-based sampling: each step draws ``candidate_factor`` x batch pool
  samples, scores them in eval mode and keeps those a sampler picks (method.md §3).

Each can train from scratch or fine-tune: pass a trained model (e.g. from ``"ce"``) to :func:`fit`.
New methods register a step function with :func:`register_method` without touching the loop.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import device as default_device
from .config import seed_everything
from .data.base import Benchmark
from .lipschitz import input_gradient_norm
from .losses import CONVENTIONS, greg_objective, greg_penalty, oe_loss
from .sampling import SAMPLERS, get_sampler
from .scores import energy

__all__ = ["TrainConfig", "History", "fit", "METHODS", "register_method", "StepFn"]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit`. Unknown names raise, so typos do not pass silently.

    ``lr`` is the peak learning rate; ``schedule="cosine"`` anneals it to 0 per step, ``"multistep"``
    multiplies it by ``gamma`` at each epoch in ``milestones``. ``amp``: bf16 autocast on CUDA (ignored
    elsewhere); ``channels_last``: NHWC memory format for convolutions.
    ``aux_batch_size`` is the number of pool samples drawn per step by methods that use
    outliers (default: twice ``batch_size``, as in the energy paper's CIFAR recipe).
    Outlier methods: ``m_in``/``m_out`` are the energy margins (required by "energy", "greg",
    "oe+grad"; see :func:`gregnb.losses.propose_margins`), ``lambda_s``, ``lambda_grad``,
    ``lambda_oe`` the loss weights, ``convention`` "paper" or "reference" (method.md §4.1),
    ``penalize`` "correct" (the method) or "all" (ablation), ``grad_every`` = k applies the gradient
    term only every k-th step with weight k * lambda_grad (lazy regularisation, as StyleGAN2's R1).
    ``log_grad_norms``: after each epoch, record the mean ||grad_x E|| on a fixed set of 256 ID
    training and 256 pool samples (eval mode) as ``grad_norm_id`` / ``grad_norm_aux``.
    GReg+ (``"greg+"``): ``candidate_factor`` (6 in the paper) sets the candidates per step;
    ``sampler`` one of "energy_cluster" (GReg+), "random", "greedy", "dos"; ``two_way`` also picks
    each cluster's highest-energy member (the OOD batch is then 2x the ID batch); ``n_clusters``
    (default: the ID batch size, as in the paper); ``window`` an energy-sorted slice of the candidates.
    ``extra`` holds settings for methods registered elsewhere.
    """

    method: str = "ce"
    epochs: int = 10
    batch_size: int = 64
    aux_batch_size: int | None = None
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    amp: bool = False
    channels_last: bool = False
    seed: int = 0
    progress: bool = True
    m_in: float | None = None
    m_out: float | None = None
    lambda_s: float = 0.1
    lambda_grad: float = 1.0
    lambda_oe: float = 0.5
    convention: str = "paper"
    penalize: str = "correct"
    grad_every: int = 1
    temperature: float = 1.0
    log_grad_norms: bool = True
    candidate_factor: int = 6
    sampler: str = "energy_cluster"
    two_way: bool = True
    n_clusters: int | None = None
    window: tuple[int, int] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; registered: {sorted(METHODS)}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant", "multistep"):
            raise ValueError(f"schedule must be 'cosine', 'constant' or 'multistep', got {self.schedule!r}")
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {self.convention!r}")
        if self.penalize not in ("correct", "all"):
            raise ValueError(f"penalize must be 'correct' or 'all', got {self.penalize!r}")
        if not isinstance(self.grad_every, int) or self.grad_every < 1:
            raise ValueError(f"grad_every must be a positive integer, got {self.grad_every!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}")
        if not isinstance(self.candidate_factor, int) or self.candidate_factor < 1:
            raise ValueError(f"candidate_factor must be a positive integer, got {self.candidate_factor!r}")
        if METHODS[self.method].needs_margins:
            if self.m_in is None or self.m_out is None:
                raise ValueError(f"method {self.method!r} needs the energy margins m_in and m_out; "
                                 f"gregnb.losses.propose_margins(model, data.train_x, data.aux_x) suggests a pair")
            if not self.m_in < self.m_out:
                raise ValueError(f"m_in must be below m_out (low energy = ID), got {self.m_in}, {self.m_out}")


class StepFn(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_aux: torch.Tensor | None,
                 cfg: TrainConfig, step: int) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class _Method:
    step: StepFn
    uses_aux: bool
    needs_margins: bool = False
    aux_size: Callable[[TrainConfig], int] | None = None  # pool samples per step (default 2x batch)


#: name -> registered training method
METHODS: dict[str, _Method] = {}


def register_method(name: str, step: StepFn, *, uses_aux: bool, needs_margins: bool = False,
                    aux_size: Callable[[TrainConfig], int] | None = None) -> None:
    """Register a training method. ``step(model, x, y, x_aux, cfg, step_index)`` returns
    ``(loss, logs)``; ``logs`` values are floats that :func:`fit` averages over each epoch into the
    history (key -> list per epoch). ``aux_size(cfg)`` says how many pool samples a step draws when
    ``cfg.aux_batch_size`` is not set."""
    METHODS[name] = _Method(step, uses_aux, needs_margins, aux_size)


def _ce_step(model, x, y, x_aux, cfg, step):
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    acc = (logits.argmax(1) == y).float().mean()
    return loss, {"loss_ce": loss.item(), "train_acc": acc.item()}


def _oe_step(model, x, y, x_aux, cfg, step):
    logits = model(torch.cat([x, x_aux]))
    n = len(x)
    ce = F.cross_entropy(logits[:n], y)
    oe = oe_loss(logits[n:])
    acc = (logits[:n].argmax(1) == y).float().mean()
    return ce + cfg.lambda_oe * oe, {"loss_ce": ce.item(), "loss_oe": oe.item(), "train_acc": acc.item()}


def _grad_weight(cfg: TrainConfig, step: int) -> float:
    """Lazy regularisation: the gradient term on every k-th step only, with weight k * lambda."""
    return cfg.lambda_grad * cfg.grad_every if step % cfg.grad_every == 0 else 0.0


def _energy_step(model, x, y, x_aux, cfg, step):
    return greg_objective(model, x, y, x_aux, m_in=cfg.m_in, m_out=cfg.m_out, lambda_s=cfg.lambda_s,
                          lambda_grad=0.0, temperature=cfg.temperature)


def _greg_step(model, x, y, x_aux, cfg, step):
    return greg_objective(model, x, y, x_aux, m_in=cfg.m_in, m_out=cfg.m_out, lambda_s=cfg.lambda_s,
                          lambda_grad=_grad_weight(cfg, step), convention=cfg.convention,
                          penalize=cfg.penalize, temperature=cfg.temperature)


def _oe_grad_step(model, x, y, x_aux, cfg, step):
    """OE + GReg's gradient term: the energies only choose which rows are flattened."""
    n = len(x)
    weight = _grad_weight(cfg, step)
    inputs = torch.cat([x, x_aux])
    if weight:
        inputs = inputs.detach().requires_grad_(True)
    logits = model(inputs)
    ce = F.cross_entropy(logits[:n], y)
    oe = oe_loss(logits[n:])
    loss = ce + cfg.lambda_oe * oe
    g = torch.zeros(())
    if weight:
        e = energy(logits, cfg.temperature)
        g = greg_penalty(inputs, e, n, cfg.m_in, cfg.m_out, convention=cfg.convention, penalize=cfg.penalize)
        loss = loss + weight * g
    acc = (logits[:n].argmax(1) == y).float().mean()
    return loss, {"loss_ce": ce.item(), "loss_oe": oe.item(), "loss_grad": g.item(), "train_acc": acc.item()}


def _gregplus_step(model, x, y, candidates, cfg, step):
    """Score the candidates in eval mode, let the sampler pick the OOD batch, then a GReg step."""
    n_id = len(x)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, feats = model(candidates, return_features=True)
        e = energy(logits, cfg.temperature)
    model.train(was_training)
    n_select = min(len(candidates), n_id * (2 if cfg.two_way and cfg.sampler == "energy_cluster" else 1))
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    kwargs = dict(n_select=n_select, generator=gen)
    if cfg.sampler in ("energy_cluster", "dos"):
        n_clusters = min(cfg.n_clusters or n_id, len(candidates))
        kwargs.update(n_clusters=n_clusters)
        if cfg.window is not None or cfg.sampler == "energy_cluster":
            kwargs.update(window=cfg.window)
    if cfg.sampler == "energy_cluster":
        kwargs.update(two_way=cfg.two_way, n_per_cluster=max(1, n_id // kwargs["n_clusters"]))
    idx = get_sampler(cfg.sampler)(feats, e, **kwargs)
    x_ood = candidates[idx]
    loss, logs = greg_objective(model, x, y, x_ood, m_in=cfg.m_in, m_out=cfg.m_out, lambda_s=cfg.lambda_s,
                                lambda_grad=_grad_weight(cfg, step), convention=cfg.convention,
                                penalize=cfg.penalize, temperature=cfg.temperature)
    logs["picked_energy"] = e[idx].mean().item()
    logs["candidate_energy"] = e.mean().item()
    return loss, logs


register_method("ce", _ce_step, uses_aux=False)
register_method("oe", _oe_step, uses_aux=True)
register_method("energy", _energy_step, uses_aux=True, needs_margins=True)
register_method("greg", _greg_step, uses_aux=True, needs_margins=True)
register_method("oe+grad", _oe_grad_step, uses_aux=True, needs_margins=True)
register_method("greg+", _gregplus_step, uses_aux=True, needs_margins=True,
                aux_size=lambda cfg: cfg.candidate_factor * cfg.batch_size)


class History(dict):
    """Per-epoch record: key -> list of floats, one per epoch (``history["loss"][-1]`` is the last)."""

    def last(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.items() if v}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024, transform=None) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode, as a fraction (``transform``: e.g. normalisation)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(dev)
        xb = transform(xb) if transform is not None else xb
        correct += (model(xb).argmax(1).cpu() == y[i:i + batch_size].cpu()).sum().item()
    model.train(was_training)
    return correct / len(x)


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":  # per step, to zero at the last step (as the energy paper's fine-tune)
        fn = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))  # noqa: E731
    elif cfg.schedule == "multistep":  # x gamma at each milestone epoch (GReg+: 0.1 -> 0.01 after epoch 50)
        fn = lambda s: cfg.gamma ** sum(s >= m * steps_per_epoch for m in cfg.milestones)  # noqa: E731
    else:
        fn = lambda s: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)


def _dist_info() -> tuple[int, int]:
    """(rank, world size): from torch.distributed when a process group is up (torchrun), else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


def _plain_config(cfg: TrainConfig) -> dict:
    """The config with tuples as lists, so a checkpoint loads with weights_only=True."""
    out = {}
    for k, v in asdict(cfg).items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def fit(model: nn.Module, data: Benchmark, method: str = "ce", *, device: str | torch.device | None = None,
        step_hook: Callable[[int, dict], None] | None = None, checkpoint: str | os.PathLike | None = None,
        resume: bool = False, checkpoint_extra: dict | None = None, **config) -> History:
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
        resume: continue from ``checkpoint`` if it exists: the result equals an uninterrupted run.
        checkpoint_extra: more entries for the checkpoint (e.g. ``{"meta": {...}}`` naming data and model).
        **config: fields of :class:`TrainConfig` (epochs, batch_size, lr, ...).

    Under ``torchrun`` (a process group initialised), each process takes its contiguous shard of every
    global batch (``batch_size`` and ``aux_batch_size`` are global) and the model is wrapped in
    DistributedDataParallel; only rank 0 writes the checkpoint.

    The history holds, per epoch: ``loss`` (mean total loss), the step logs (e.g. ``loss_ce``,
    ``train_acc``) averaged over the epoch, ``test_acc`` (eval mode, on ``data.test_x``), ``lr``,
    ``epoch_seconds`` (wall time of the epoch's training steps) and, if ``log_grad_norms``,
    ``grad_norm_id`` / ``grad_norm_aux``. Same seed, same data, same device -> same weights.
    """
    from .cache import load_checkpoint, save_checkpoint

    cfg = TrainConfig(method=method, **config)
    spec = METHODS[cfg.method]
    dev = torch.device(device) if device is not None else default_device()
    rank, world = _dist_info()
    gen = seed_everything(cfg.seed)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(dev)
    if cfg.channels_last and data.train_x.ndim == 4:
        model.to(memory_format=torch.channels_last)
    x_all, y_all = data.train_x, data.train_y
    if len(x_all) != len(y_all) or len(x_all) == 0:
        raise ValueError(f"train_x and train_y must be non-empty and of equal length, got {len(x_all)} and {len(y_all)}")
    aux_bs = cfg.aux_batch_size or (spec.aux_size(cfg) if spec.aux_size else 2 * cfg.batch_size)
    if spec.uses_aux and (data.aux_x is None or len(data.aux_x) == 0):
        raise ValueError(f"method {cfg.method!r} trains with auxiliary outliers but data.aux_x is empty; "
                         f"use a benchmark with a pool or method='ce'")
    if world > 1 and (cfg.batch_size % world or aux_bs % world):
        raise ValueError(f"batch_size ({cfg.batch_size}) and the outlier batch ({aux_bs}) are global and must "
                         f"divide by the number of processes ({world})")
    steps_per_epoch = math.ceil(len(x_all) / cfg.batch_size)
    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = _make_optimizer(model, cfg)
    sched = _scheduler(opt, cfg, steps_per_epoch)
    history = History()
    step, start_epoch = 0, 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=dev)
        if state.get("config", {}).get("method") != cfg.method:
            raise ValueError(f"{ckpt_path} was written by method {state.get('config', {}).get('method')!r}, "
                             f"not {cfg.method!r}; use another --out folder or the same method")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = History({k: list(v) for k, v in state["history"].items()})
        step, start_epoch = int(state["step"]), int(state["epoch"])
        _set_rng_state(state["rng"], gen)
    probe_gen = torch.Generator().manual_seed(cfg.seed + 1)
    probe_id = x_all[torch.randperm(len(x_all), generator=probe_gen)[:256]]
    probe_aux = None
    if data.aux_x is not None and len(data.aux_x):
        probe_aux = data.aux_x[torch.randperm(len(data.aux_x), generator=probe_gen)[:256]]
    amp = cfg.amp and dev.type == "cuda"
    bar = tqdm(range(start_epoch, cfg.epochs), desc=f"{cfg.method}", disable=not cfg.progress or rank != 0,
               leave=False, initial=start_epoch, total=cfg.epochs)
    for epoch in bar:
        t_epoch = time.perf_counter()
        model.train()
        sums: dict[str, float] = {}
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            if len(idx) < 2 * world and steps_per_epoch > 1:
                continue  # a 1-sample tail batch breaks BatchNorm; skip it
            aux_idx = torch.randint(len(data.aux_x), (aux_bs,), generator=gen) if spec.uses_aux else None
            if world > 1:  # contiguous shards of the global batch (the tail batch may be uneven: chunk handles it)
                idx = idx.chunk(world)[rank]
                aux_idx = aux_idx.chunk(world)[rank] if aux_idx is not None else None
            x = data.prepare_train(x_all[idx].to(dev, non_blocking=True), gen)
            y = y_all[idx].to(dev, non_blocking=True)
            x_aux = data.prepare_train(data.aux_x[aux_idx].to(dev, non_blocking=True), gen) if aux_idx is not None else None
            if cfg.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
                x_aux = x_aux.contiguous(memory_format=torch.channels_last) if x_aux is not None else None
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                loss, logs = spec.step(train_model, x, y, x_aux, cfg, step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss ({loss.item()}) at step {step} (epoch {epoch + 1}) of method "
                                         f"{cfg.method!r}; lower the learning rate (now {sched.get_last_lr()[0]:.3g}) "
                                         f"or check the inputs. The last good checkpoint is kept"
                                         + (f" at {ckpt_path}" if ckpt_path else ""))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_value = loss.detach().float()
            if world > 1:
                import torch.distributed as dist

                dist.all_reduce(loss_value)
                loss_value /= world
            logs = {"loss": loss_value.item(), **logs}
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            sums["_n"] = sums.get("_n", 0.0) + 1
            if step_hook is not None:
                step_hook(step, logs)
        epoch_seconds = time.perf_counter() - t_epoch  # training steps only, not the evaluation below
        n = sums.pop("_n", 1.0)
        for k, v in sums.items():
            history.setdefault(k, []).append(v / n)
        history.setdefault("lr", []).append(sched.get_last_lr()[0])
        history.setdefault("epoch_seconds", []).append(epoch_seconds)
        history.setdefault("test_acc", []).append(accuracy(model, data.test_x, data.test_y, transform=data.eval_transform))
        if cfg.log_grad_norms:  # the paper's Fig. 3: input-gradient norms over training
            history.setdefault("grad_norm_id", []).append(
                input_gradient_norm(model, data.prepare_eval(probe_id.to(dev))).mean().item())
            if probe_aux is not None:
                history.setdefault("grad_norm_aux", []).append(
                    input_gradient_norm(model, data.prepare_eval(probe_aux.to(dev))).mean().item())
        if ckpt_path is not None and rank == 0:
            save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "epoch": epoch + 1, "step": step,
                             "history": {k: list(v) for k, v in history.items()}, "rng": _rng_state(gen),
                             "config": _plain_config(cfg), **(checkpoint_extra or {})}, ckpt_path)
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", test_acc=f"{history['test_acc'][-1]:.3f}")
    model.eval()
    history.config = asdict(cfg)  # type: ignore[attr-defined]
    return history


# ---------------------------------------------------------------- command line

def load_dataset(name: str, *, root: str | None = None, aux: str | None = None, download: bool = False,
                 seed: int = 0, max_aux: int | None = None) -> Benchmark:
    """A benchmark by CLI name: "digits" (offline) or "cifar10" / "cifar100" (files under ``root``)."""
    if name == "digits":
        from .data.digits import load_benchmark

        return load_benchmark(seed)
    if name in ("cifar10", "cifar100"):
        from .data.cifar import load_cifar_benchmark

        return load_cifar_benchmark(name, root, download=download, aux=aux, max_aux=max_aux)
    raise ValueError(f"unknown dataset {name!r}; choose digits, cifar10 or cifar100")


def _to_device_if_fits(data: Benchmark, dev: torch.device, fraction: float = 0.5) -> None:
    """Move the image tensors to the GPU when they take less than ``fraction`` of its free memory."""
    if dev.type != "cuda":
        return
    parts = [data.train_x, data.test_x, data.aux_x, *data.ood.values()]
    need = sum(t.numel() * t.element_size() for t in parts)
    free, _ = torch.cuda.mem_get_info(dev)
    if need < fraction * free:
        data.train_x, data.test_x = data.train_x.to(dev), data.test_x.to(dev)
        data.aux_x = data.aux_x.to(dev)
        data.ood = {k: v.to(dev) for k, v in data.ood.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m gregnb.train``: train one model, keep ``OUT/last.pt``, write ``OUT/metrics.json``."""
    import argparse
    import json

    from .cache import load_checkpoint
    from .evaluate import evaluate
    from .losses import propose_margins
    from .models import ARCHS, build_model
    from .presets import PRESETS, get_preset

    ap = argparse.ArgumentParser(prog="python -m gregnb.train", description=main.__doc__)
    ap.add_argument("--dataset", default="digits", choices=["digits", "cifar10", "cifar100"])
    ap.add_argument("--arch", choices=sorted(ARCHS), help="default: small_cnn for digits, wrn40_2 for CIFAR")
    ap.add_argument("--method", choices=sorted(METHODS), help="overrides the preset's method")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="a named recipe (method.md §5)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--aux-batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--optimizer", choices=["adam", "sgd"])
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--m-in", type=float)
    ap.add_argument("--m-out", type=float)
    ap.add_argument("--lambda-s", type=float)
    ap.add_argument("--lambda-grad", type=float)
    ap.add_argument("--grad-every", type=int)
    ap.add_argument("--sampler", choices=sorted(SAMPLERS))
    ap.add_argument("--convention", choices=list(CONVENTIONS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder for last.pt and metrics.json")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    ap.add_argument("--init", help="a checkpoint whose 'model' entry initialises the network (fine-tuning)")
    ap.add_argument("--device", help="cuda, cpu, mps (default: the best available)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--data-root", help="folder with the datasets (default: data/ or $GREGNB_DATA)")
    ap.add_argument("--aux", help="auxiliary pool: a .npy of (N, 32, 32, 3) uint8 or an image folder")
    ap.add_argument("--max-aux", type=int, help="use only the first N pool images")
    ap.add_argument("--download", action="store_true", help="let torchvision download CIFAR")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    settings = get_preset(args.preset) if args.preset else {}
    if args.method:
        settings["method"] = args.method
    settings.setdefault("method", "ce")
    for flag, key in [("epochs", "epochs"), ("batch_size", "batch_size"), ("aux_batch_size", "aux_batch_size"),
                      ("lr", "lr"), ("optimizer", "optimizer"), ("weight_decay", "weight_decay"),
                      ("lambda_s", "lambda_s"), ("lambda_grad", "lambda_grad"), ("grad_every", "grad_every"),
                      ("sampler", "sampler"), ("convention", "convention")]:
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    margins = settings.pop("margins", "propose")

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and args.device != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
        dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
    else:
        dev = torch.device(args.device) if args.device else default_device()

    data = load_dataset(args.dataset, root=args.data_root, aux=args.aux, download=args.download, seed=args.seed,
                        max_aux=args.max_aux)
    _to_device_if_fits(data, dev)
    arch = args.arch or ("small_cnn" if args.dataset == "digits" else "wrn40_2")
    in_channels = 1 if args.dataset == "digits" else 3
    seed_everything(args.seed)
    model = build_model(arch, n_classes=data.n_classes, in_channels=in_channels)
    if args.init:
        model.load_state_dict(load_checkpoint(args.init)["model"])
    if METHODS[settings["method"]].needs_margins:
        if args.m_in is not None and args.m_out is not None:
            settings["m_in"], settings["m_out"] = args.m_in, args.m_out
        elif margins == "dataset":
            from .data.cifar import DEFAULT_MARGINS

            settings["m_in"], settings["m_out"] = DEFAULT_MARGINS[args.dataset]
        elif isinstance(margins, tuple):
            settings["m_in"], settings["m_out"] = margins
        else:
            model.to(dev)
            settings["m_in"], settings["m_out"] = propose_margins(
                model, data.prepare_eval(data.train_x[:4000].to(dev)), data.prepare_eval(data.aux_x[:4000].to(dev)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": args.dataset, "arch": arch, "n_classes": data.n_classes, "in_channels": in_channels,
            "seed": args.seed}
    history = fit(model, data, device=dev, checkpoint=out / "last.pt", resume=args.resume, seed=args.seed,
                  progress=not args.no_progress, amp=args.amp, channels_last=args.channels_last,
                  checkpoint_extra={"meta": meta}, **settings)
    rank, _ = _dist_info()
    if rank == 0:
        results = evaluate(model, data)
        results.update(meta=meta, method=settings["method"], settings={k: (list(v) if isinstance(v, tuple) else v)
                                                                        for k, v in settings.items()},
                       history={k: list(v) for k, v in history.items()})
        (out / "metrics.json").write_text(json.dumps(results, indent=2))
        print(f"accuracy {100 * results['accuracy']:.2f}%  mean FPR95 {100 * results['mean']['fpr95']:.2f}%  "
              f"mean AUROC {100 * results['mean']['auroc']:.2f}%  -> {out / 'metrics.json'}")
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
