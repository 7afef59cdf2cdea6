"""Running a model for inference: the one way to switch a model to eval mode and back."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

__all__ = ["eval_mode"]


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
