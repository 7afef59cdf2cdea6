"""The training configuration (one source of truth for every setting) and the per-epoch history."""
from __future__ import annotations

import math
import numbers
import typing
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..losses import CONVENTIONS
from ..sampling import CANDIDATE_FACTOR, SAMPLERS, SelectionPlan, plan_selection
from ..validate import scalar
from .registry import METHODS

__all__ = ["TrainConfig", "History", "plain_config", "config_fields", "OPTIMIZERS", "SCHEDULES",
           "PENALIZE", "AUX_BATCH_FACTOR"]

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant", "multistep")
PENALIZE = ("correct", "all")  # the gradient term on correctly detected samples (GReg), or on all (ablation)
#: the default OOD batch of the outlier methods: this many times the ID batch (the energy paper's CIFAR recipe)
AUX_BATCH_FACTOR = 2


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`fit`. Unknown names raise, so typos do not pass silently.

    ``lr`` is the peak learning rate; ``schedule="cosine"`` anneals it to 0 per step, ``"multistep"``
    multiplies it by ``gamma`` at each epoch in ``milestones``. ``amp``: bf16 autocast on CUDA (ignored
    elsewhere); ``channels_last``: NHWC memory format for convolutions.
    ``aux_batch_size`` is the OOD batch trained on per step by methods that use outliers (default: twice
    ``batch_size``, as in the energy paper's CIFAR recipe). For ``"greg+"`` it is the number of *picks*
    (default 2x the batch two-way, 1x one-way, as in the authors' code) taken from
    ``candidate_factor`` x ``batch_size`` candidates; it must stay below the candidate count.
    Outlier methods: ``m_in``/``m_out`` are the energy margins (required by the methods registered with
    ``needs_margins``: "energy", "greg", "oe+grad", "greg+"; see :func:`gregnb.losses.propose_margins`),
    ``lambda_s``, ``lambda_grad``,
    ``lambda_oe`` the loss weights, ``convention`` "paper" (the paper's equation) or "reference" (the authors'
    code: a 1/N weight; see :func:`gregnb.losses.greg_penalty`),
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
    candidate_factor: int = CANDIDATE_FACTOR
    sampler: str = "energy_cluster"
    two_way: bool = True
    n_clusters: int | None = None
    window: tuple[int, int] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; registered: {sorted(METHODS)}")
        # whole numbers (NumPy's too, stored as int so checkpoints load with weights_only) and finite reals
        self.epochs, self.seed = _whole("epochs", self.epochs), _whole("seed", self.seed, 0)
        self.batch_size = _whole("batch_size", self.batch_size, 2, "BatchNorm needs two samples per batch")
        self.aux_batch_size = _whole("aux_batch_size", self.aux_batch_size, optional=True)
        self.n_clusters = _whole("n_clusters", self.n_clusters, optional=True)
        self.grad_every = _whole("grad_every", self.grad_every)
        self.candidate_factor = _whole("candidate_factor", self.candidate_factor)
        self.milestones = tuple(_whole("each of milestones", m) for m in self.milestones)
        self.lr, self.gamma, self.temperature = (_real(k, getattr(self, k), above=True)
                                                 for k in ("lr", "gamma", "temperature"))
        self.momentum, self.weight_decay, self.lambda_s, self.lambda_grad, self.lambda_oe = (
            _real(k, getattr(self, k)) for k in ("momentum", "weight_decay", "lambda_s", "lambda_grad", "lambda_oe"))
        if not self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) (0.9 is usual), got {self.momentum}: at 1 or above the "
                             f"optimiser's steps grow without bound")
        self.m_in, self.m_out = (_real(k, getattr(self, k), None, optional=True) for k in ("m_in", "m_out"))
        for k in ("amp", "channels_last", "progress", "log_grad_norms", "two_way"):
            if not isinstance(getattr(self, k), (bool, np.bool_)):
                raise ValueError(f"{k} must be True or False, got {getattr(self, k)!r}")
            setattr(self, k, bool(getattr(self, k)))
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra must be a dict of settings, got {type(self.extra).__name__}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {self.convention!r}")
        if self.penalize not in PENALIZE:
            raise ValueError(f"penalize must be one of {PENALIZE}, got {self.penalize!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}")
        if self.window is not None:
            self.window = tuple(int(w) for w in self.window)
        if METHODS[self.method].check is not None:
            METHODS[self.method].check(self)  # greg+: sampler, picks, k and window against the candidate batch
        if METHODS[self.method].needs_margins:
            if self.m_in is None or self.m_out is None:
                raise ValueError(f"method {self.method!r} needs the energy margins m_in and m_out; "
                                 f"gregnb.losses.propose_margins(model, data.train_x, data.aux_x) suggests a pair")
            if not self.m_in < self.m_out:
                raise ValueError(f"m_in must be below m_out (low energy = ID), got {self.m_in}, {self.m_out}")

    @property
    def aux_per_step(self) -> int:
        """Pool samples one step draws: the method's own rule (greg+: its candidates), else the OOD batch
        ``aux_batch_size``, by default :data:`AUX_BATCH_FACTOR` x ``batch_size``. (0 is not returned for methods
        without outliers: they draw none whatever this says; see ``METHODS[method].uses_aux``.)"""
        spec = METHODS[self.method]
        return spec.aux_size(self) if spec.aux_size else (self.aux_batch_size or AUX_BATCH_FACTOR * self.batch_size)

    def plan_selection(self, batch_size: int | None = None, n_candidates: int | None = None) -> SelectionPlan:
        """GReg+'s selection for this config, through :func:`gregnb.sampling.plan_selection`: ``candidate_factor`` x
        the ID batch scored, ``aux_batch_size`` (default 2x the batch two-way, 1x one-way) picked.
        ``batch_size``/``n_candidates`` give a step's local sizes (a tail batch, one process's shard); the picks
        then scale with the batch."""
        b = self.batch_size if batch_size is None else batch_size
        picks = self.aux_batch_size
        if picks is not None and b != self.batch_size:
            picks = max(1, round(picks * b / self.batch_size))
        return plan_selection(self.sampler, b, two_way=self.two_way, n_clusters=self.n_clusters, window=self.window,
                              candidate_factor=self.candidate_factor, n_picks=picks, n_candidates=n_candidates)


def _whole(name: str, v, low: int = 1, why: str = "", optional: bool = False) -> int | None:
    """``v`` as an int >= ``low`` (Python or NumPy integers, 0-d tensors; not bools or floats), or None if
    ``optional``."""
    if v is None and optional:
        return None
    v = scalar(v)  # a 0-d tensor or array: its number
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < low:
        raise ValueError(f"{name} must be a whole number >= {low}{' (' + why + ')' if why else ''}"
                         f"{' or None for the default' if optional else ''}, got {v!r}")
    return int(v)


def _real(name: str, v, low: float | None = 0.0, *, above: bool = False, optional: bool = False) -> float | None:
    """``v`` as a finite float (>= ``low``, or > it if ``above``), or None if ``optional``."""
    if v is None and optional:
        return None
    v = scalar(v)
    ok = not isinstance(v, (bool, np.bool_)) and isinstance(v, numbers.Real) and math.isfinite(v)
    if not ok or (low is not None and (v <= low if above else v < low)):
        bound = "" if low is None else f" {'>' if above else '>='} {low:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {v!r}")
    return float(v)


def config_fields() -> dict[str, object]:
    """Each :class:`TrainConfig` field and its default (what the command line turns into flags)."""
    return {f.name: f.default for f in fields(TrainConfig)}


def field_types() -> dict[str, object]:
    """Each :class:`TrainConfig` field's declared type, resolved (``int``, ``float | None``, ``tuple[int, ...]``):
    what the command line's flag types are read from."""
    return typing.get_type_hints(TrainConfig)


class History(dict):
    """Per-epoch record: key -> list of floats, one per epoch (``history["loss"][-1]`` is the last).

    ``config``: the settings that ran (:func:`plain_config` of the :class:`TrainConfig`); ``extensions``: the
    times a finished run was extended to more epochs (see :func:`gregnb.train.fit`'s ``resume``).
    """

    def __init__(self, *args, config: dict | None = None, extensions: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.config: dict = dict(config or {})
        self.extensions: list = list(extensions or [])

    def last(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.items() if v}


def plain_config(cfg: TrainConfig) -> dict:
    """The config with tuples as lists, so a checkpoint loads with weights_only=True."""
    out = {}
    for k, v in asdict(cfg).items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out
