"""The registry of training methods: a name -> a step function and what it needs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

__all__ = ["StepFn", "MethodSpec", "METHODS", "register_method"]

# Annotations name "TrainConfig" (gregnb.train.config) as a string: that module imports this one.


class StepFn(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_aux: torch.Tensor | None,
                 cfg: "TrainConfig", step: int) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class MethodSpec:
    step: StepFn
    uses_aux: bool
    needs_margins: bool = False
    aux_size: Callable[["TrainConfig"], int] | None = None  # pool samples per step (default 2x batch)


#: name -> registered training method
METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, step: StepFn, *, uses_aux: bool, needs_margins: bool = False,
                    aux_size: Callable[["TrainConfig"], int] | None = None) -> None:
    """Register a training method. ``step(model, x, y, x_aux, cfg, step_index)`` returns
    ``(loss, logs)``; ``logs`` values are floats that :func:`fit` averages over each epoch into the
    history (key -> list per epoch). ``aux_size(cfg)`` says how many pool samples a step draws when
    ``cfg.aux_batch_size`` is not set."""
    METHODS[name] = MethodSpec(step, uses_aux, needs_margins, aux_size)
