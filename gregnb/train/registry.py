"""The registry of training methods: a name -> a step function and what the method can do."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

__all__ = ["StepFn", "MethodSpec", "METHODS", "register_method", "margin_methods", "GRAD_COST"]

# Annotations name "TrainConfig" (gregnb.train.config) as a string: that module imports this one.

#: the extra cost of a step with GReg's gradient term (its double backward), in energy-step units
GRAD_COST = 1.5


class StepFn(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_aux: torch.Tensor | None,
                 cfg: "TrainConfig", step: int) -> tuple[torch.Tensor, dict]: ...


@dataclass
class MethodSpec:
    """What a registered method is and can do: its ``step``; whether it draws outliers from the pool
    (``uses_aux``); whether it needs the energy margins ``m_in``/``m_out`` (``needs_margins``: the one place that
    says so); whether its step builds GReg's input-gradient term when ``lambda_grad != 0`` (``input_gradient``);
    whether the same step also trains M stacked members at once (``stacks``: inputs with a leading member axis and a
    :class:`gregnb.train.batched_steps.MemberSettings` for ``cfg``, returning ``(M,)`` losses and ``(M,)`` logs);
    ``cost``, the relative cost of one step without the gradient term (an energy step = 1); ``aux_size(cfg)``, the
    pool samples a step draws, when that is not the OOD batch (:attr:`TrainConfig.aux_per_step`); ``check(cfg)``,
    which validates the method's own settings when a :class:`TrainConfig` is built (raises ``ValueError``)."""

    step: StepFn
    uses_aux: bool
    needs_margins: bool = False
    aux_size: Callable[["TrainConfig"], int] | None = None
    check: Callable[["TrainConfig"], object] | None = None
    input_gradient: bool = False
    stacks: bool = False
    cost: float = 1.0

    def uses_input_gradient(self, cfg: "TrainConfig") -> bool:
        """Whether a run with ``cfg`` builds the input-gradient term (on some steps: see ``grad_every``)."""
        return self.input_gradient and cfg.lambda_grad != 0

    def relative_cost(self, cfg: "TrainConfig") -> float:
        """A rough cost of training with ``cfg``, in energy-step epochs (to start the longest runs first): the step's
        ``cost``, plus :data:`GRAD_COST` for the gradient term, spread over ``grad_every`` steps when lazy."""
        per_step = self.cost
        if self.uses_input_gradient(cfg):
            per_step = 1.0 + (per_step + GRAD_COST - 1.0) / cfg.grad_every
        return per_step * cfg.epochs


#: name -> registered training method
METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, step: StepFn, *, uses_aux: bool, needs_margins: bool = False,
                    aux_size: Callable[["TrainConfig"], int] | None = None,
                    check: Callable[["TrainConfig"], object] | None = None, input_gradient: bool = False,
                    stacks: bool = False, cost: float = 1.0) -> None:
    """Register a training method. ``step(model, x, y, x_aux, cfg, step_index)`` returns
    ``(loss, logs)``; ``logs`` values are floats that :func:`fit` averages over each epoch into the
    history (key -> list per epoch); a ``"picked_index"`` entry (the rows of ``x_aux`` trained on) is taken out.
    The other settings are :class:`MethodSpec`'s; ``stacks=True`` only for a step written for stacked members too."""
    METHODS[name] = MethodSpec(step, uses_aux, needs_margins, aux_size, check, input_gradient, stacks, cost)


def margin_methods() -> list[str]:
    """The registered methods that need the energy margins ``m_in``/``m_out``, sorted."""
    return sorted(k for k, v in METHODS.items() if v.needs_margins)
