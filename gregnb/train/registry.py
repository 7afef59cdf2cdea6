"""The registry of training methods: a name -> a step function and what it needs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

__all__ = ["StepFn", "MethodSpec", "METHODS", "register_method", "margin_methods"]

# Annotations name "TrainConfig" (gregnb.train.config) as a string: that module imports this one.


class StepFn(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_aux: torch.Tensor | None,
                 cfg: "TrainConfig", step: int) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class MethodSpec:
    """What a registered method is and needs: its ``step``; whether it draws outliers from the pool
    (``uses_aux``); whether it needs the energy margins ``m_in``/``m_out`` (``needs_margins``: the one place that
    says so); ``aux_size(cfg)``, the pool samples a step draws, when that is not the OOD batch
    (:attr:`TrainConfig.aux_per_step`); ``check(cfg)``, which validates the method's own settings when a
    :class:`TrainConfig` is built (raises ``ValueError``)."""

    step: StepFn
    uses_aux: bool
    needs_margins: bool = False
    aux_size: Callable[["TrainConfig"], int] | None = None
    check: Callable[["TrainConfig"], object] | None = None


#: name -> registered training method
METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, step: StepFn, *, uses_aux: bool, needs_margins: bool = False,
                    aux_size: Callable[["TrainConfig"], int] | None = None,
                    check: Callable[["TrainConfig"], object] | None = None) -> None:
    """Register a training method. ``step(model, x, y, x_aux, cfg, step_index)`` returns
    ``(loss, logs)``; ``logs`` values are floats that :func:`fit` averages over each epoch into the
    history (key -> list per epoch). ``aux_size(cfg)`` says how many pool samples a step draws when
    ``cfg.aux_batch_size`` is not set; ``check(cfg)`` validates the method's settings (see :class:`MethodSpec`)."""
    METHODS[name] = MethodSpec(step, uses_aux, needs_margins, aux_size, check)


def margin_methods() -> list[str]:
    """The registered methods that need the energy margins ``m_in``/``m_out``, sorted."""
    return sorted(k for k, v in METHODS.items() if v.needs_margins)
