"""Input gradients of the score: the local geometry GReg shapes (method.md E5, E9).

``input_gradient_norm`` is the per-sample ``||grad_x S(x)||_2``: the first-order Lipschitz
estimate at ``x`` (exact inside one linear region of a piecewise-linear score).
"""
from __future__ import annotations

import torch
from torch import nn

from .scores import energy

__all__ = ["input_gradient_norm"]


def input_gradient_norm(model: nn.Module, x: torch.Tensor, score: str = "energy", *, temperature: float = 1.0,
                        batch_size: int = 1024) -> torch.Tensor:
    """Per-sample ``||grad_x S(x_i)||_2`` in eval mode (no coupling between samples), on the CPU.

    Args:
        x: ``(N, ...)`` inputs in the space the model sees (gradients, and so radii, live there).
        score: ``"energy"`` (E, LOW = ID) or ``"max_logit"``.

    Returns:
        ``(N,)`` float tensor of gradient norms, in score units per input unit.
    """
    if score not in ("energy", "max_logit"):
        raise ValueError(f"score must be 'energy' or 'max_logit', got {score!r}")
    if len(x) == 0:
        raise ValueError("x is empty")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev).detach().requires_grad_(True)
            logits = model(xb)
            s = energy(logits, temperature) if score == "energy" else logits.amax(dim=1)
            (g,) = torch.autograd.grad(s.sum(), xb)  # rows are independent in eval mode
            out.append(g.flatten(1).norm(dim=1).detach().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)
