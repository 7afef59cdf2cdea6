"""OOD scores computed from logits.

Sign conventions:

* :func:`energy` is LOW for in-distribution inputs (the paper's convention; (E2) in docs/method.md).
* :func:`msp` and :func:`max_logit` are HIGH for in-distribution inputs.

All take ``logits`` of shape ``(N, K)`` (N samples, K classes) and return shape ``(N,)``.
They are differentiable, so they also serve inside losses.
"""
from __future__ import annotations

import torch

from .validate import number

__all__ = ["energy", "msp", "max_logit", "SCORES", "score_fn"]


def _check_logits(logits: torch.Tensor, name: str = "logits") -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        try:
            logits = torch.as_tensor(logits, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be a tensor or an array of numbers of shape (N, K), got "
                             f"{type(logits).__name__}") from None
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, K) with K >= 1, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        logits = logits.to(torch.get_default_dtype())
    return logits


def _check_temperature(temperature) -> float:
    """``temperature`` as a float > 0 (any number type: a 0-d tensor, a NumPy scalar)."""
    return number("temperature", temperature, low=0.0, low_open=True, hint="the paper uses 1")


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``E(x) = -T * logsumexp(f(x) / T)``; LOW = ID.

    Args:
        logits: ``(N, K)`` classifier outputs f(x).
        temperature: T > 0 (the paper uses 1). Stable for T in [0.01, 1000] and large logits,
            because ``torch.logsumexp`` subtracts the maximum before exponentiating.

    Returns:
        ``(N,)`` energies, in the units of the logits.
    """
    logits = _check_logits(logits)
    temperature = _check_temperature(temperature)
    return -temperature * torch.logsumexp(logits / temperature, dim=1)


def msp(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Maximum softmax probability ``max_k softmax(f(x)/T)_k`` in (0, 1]; HIGH = ID."""
    logits = _check_logits(logits)
    temperature = _check_temperature(temperature)
    return torch.softmax(logits / temperature, dim=1).amax(dim=1)


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """Largest logit ``max_k f_k(x)``; HIGH = ID."""
    return _check_logits(logits).amax(dim=1)


#: Each score as "HIGH = ID" so it can go straight into :mod:`gregnb.metrics`.
SCORES = {
    "msp": lambda z, T=1.0: msp(z, T),
    "max_logit": lambda z, T=1.0: max_logit(z),
    "energy": lambda z, T=1.0: -energy(z, T),
}


def score_fn(name: str):
    """The named score as a function ``(logits, T) -> (N,)`` with HIGH = ID (energy is negated)."""
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(f"unknown score {name!r}; choose one of {sorted(SCORES)}") from None
