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
import time
from dataclasses import asdict, dataclass, field
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

    ``lr`` is the peak learning rate; ``schedule="cosine"`` anneals it to 0 per step.
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
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
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
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in eval mode, as a fraction."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size].to(dev)).argmax(1).cpu() == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(x)


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def fit(model: nn.Module, data: Benchmark, method: str = "ce", *, device: str | torch.device | None = None,
        step_hook: Callable[[int, dict], None] | None = None, **config) -> History:
    """Train ``model`` on ``data`` with a registered ``method`` and return its :class:`History`.

    Args:
        model: any module mapping ``data.train_x`` batches to logits ``(B, K)``.
        data: a :class:`~gregnb.data.Benchmark`; methods that use outliers draw from ``data.aux_x``.
        method: a key of :data:`METHODS` (``"ce"`` here; later chapters register more).
        device: default :func:`gregnb.config.device`.
        step_hook: called after every optimiser step with ``(global_step, logs)``.
        **config: fields of :class:`TrainConfig` (epochs, batch_size, lr, ...).

    The history holds, per epoch: ``loss`` (mean total loss), the step logs (e.g. ``loss_ce``,
    ``train_acc``) averaged over the epoch, ``test_acc`` (eval mode, on ``data.test_x``), ``lr``,
    ``epoch_seconds`` (wall time of the epoch's training steps) and, if ``log_grad_norms``,
    ``grad_norm_id`` / ``grad_norm_aux``.
    Same seed, same data, same device -> same weights.
    """
    cfg = TrainConfig(method=method, **config)
    spec = METHODS[cfg.method]
    dev = torch.device(device) if device is not None else default_device()
    gen = seed_everything(cfg.seed)
    model.to(dev)
    x_all, y_all = data.train_x, data.train_y
    if len(x_all) != len(y_all) or len(x_all) == 0:
        raise ValueError(f"train_x and train_y must be non-empty and of equal length, got {len(x_all)} and {len(y_all)}")
    aux_bs = cfg.aux_batch_size or (spec.aux_size(cfg) if spec.aux_size else 2 * cfg.batch_size)
    if spec.uses_aux and (data.aux_x is None or len(data.aux_x) == 0):
        raise ValueError(f"method {cfg.method!r} trains with auxiliary outliers but data.aux_x is empty; "
                         f"use a benchmark with a pool or method='ce'")
    steps_per_epoch = math.ceil(len(x_all) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    opt = _make_optimizer(model, cfg)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    history = History()
    step = 0
    probe_gen = torch.Generator().manual_seed(cfg.seed + 1)
    probe_id = x_all[torch.randperm(len(x_all), generator=probe_gen)[:256]]
    probe_aux = None
    if data.aux_x is not None and len(data.aux_x):
        probe_aux = data.aux_x[torch.randperm(len(data.aux_x), generator=probe_gen)[:256]]
    bar = tqdm(range(cfg.epochs), desc=f"{cfg.method}", disable=not cfg.progress, leave=False)
    for _ in bar:
        t_epoch = time.perf_counter()
        model.train()
        sums: dict[str, float] = {}
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            if len(idx) < 2 and steps_per_epoch > 1:
                continue  # a 1-sample tail batch breaks BatchNorm; skip it
            x, y = x_all[idx].to(dev, non_blocking=True), y_all[idx].to(dev, non_blocking=True)
            x_aux = None
            if spec.uses_aux:
                aux_idx = torch.randint(len(data.aux_x), (aux_bs,), generator=gen)  # with replacement
                x_aux = data.aux_x[aux_idx].to(dev, non_blocking=True)
            loss, logs = spec.step(model, x, y, x_aux, cfg, step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss ({loss.item()}) at step {step} of method {cfg.method!r}; "
                                         f"lower the learning rate (now {sched.get_last_lr()[0]:.3g}) or check the inputs")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            logs = {"loss": loss.item(), **logs}
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
        history.setdefault("test_acc", []).append(accuracy(model, data.test_x, data.test_y))
        if cfg.log_grad_norms:  # the paper's Fig. 3: input-gradient norms over training
            history.setdefault("grad_norm_id", []).append(input_gradient_norm(model, probe_id).mean().item())
            if probe_aux is not None:
                history.setdefault("grad_norm_aux", []).append(input_gradient_norm(model, probe_aux).mean().item())
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", test_acc=f"{history['test_acc'][-1]:.3f}")
    model.eval()
    history.config = asdict(cfg)  # type: ignore[attr-defined]
    return history
