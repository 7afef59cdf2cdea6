"""Training: one loop for every method.

A *method* is a step function registered in :data:`METHODS`: it receives the model, an ID batch and (if the
method uses outliers) an auxiliary batch drawn from the pool, and returns the loss to minimise plus a dict of
numbers to log. :func:`fit` does the rest: seeding, batching, the optimiser and schedule, device placement,
checkpoints and resume, progress bars and a per-epoch :class:`History`. The registered methods ("ce", "oe",
"energy", "greg", "oe+grad", "greg+") are described in :mod:`gregnb.train.methods`; new ones register a
step function with :func:`register_method` without touching the loop.

The package, bottom up: ``registry`` (the method registry) → ``config`` (:class:`TrainConfig`, the one source
of every setting, and :class:`History`) → ``methods`` (step functions) → ``checks`` and ``distributed`` →
``loop`` (:func:`fit`, cut into named steps) → ``stacked``, ``batched_steps`` and ``batched`` (:func:`fit_many`: many
small models trained as one stacked network) → ``cli`` (``python -m gregnb.train``, flags generated from the
config).
"""
from . import methods as _methods  # noqa: F401  (registers the built-in methods)
from .cli import main
from .config import History, TrainConfig
from .loop import accuracy, fit
from .batched import fit_many
from .registry import METHODS, StepFn, register_method

__all__ = ["TrainConfig", "History", "fit", "fit_many", "accuracy", "METHODS", "register_method", "StepFn",
           "main"]

