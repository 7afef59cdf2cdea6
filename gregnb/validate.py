"""Checks at the public boundary: a bad argument becomes an error that names the argument, the value and what to
pass instead, before any work (rather than a raw torch / NumPy error from deep inside, or a silent wrong answer).

A number is accepted in any of its usual types: a Python ``int`` / ``float``, a NumPy scalar (``np.float32(0.5)``,
``np.int64(3)``), a 0-d NumPy array or a 0-d tensor (``torch.tensor(0.95)``); a ``bool``, a string, ``None`` (unless
the argument is optional) or a collection of several numbers are refused. The checks return the value as a plain
Python number, so a valid input computes exactly what it did before.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["scalar", "number", "whole", "flag", "device", "module", "gradients", "gradient_input",
           "no_inference_mode", "describe"]


def describe(value) -> str:
    """``value`` as an error message shows it: its repr (shortened) and, when the repr does not say it, its type."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim:
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    text = repr(value)
    if "\n" in text or len(text) > 80:
        size = f" of length {len(value)}" if hasattr(value, "__len__") else ""
        return f"a {type(value).__name__}{size}"
    if value is None or isinstance(value, (str, bool, int, float, np.generic, torch.Tensor, np.ndarray)):
        return text
    return f"{text} ({type(value).__name__})"


def scalar(value):
    """``value`` as a plain Python number when it is a number in another type (a NumPy scalar, a 0-d array or a
    0-d tensor); anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and value.device.type != "meta":
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fix(name: str, value) -> str:
    """What to pass instead, for the usual wrong types."""
    if value is None:
        return f"; pass a number for {name}"
    if isinstance(value, str):
        try:
            return f"; pass the number itself, not a string: {name}={float(value)!r}"
        except ValueError:
            return f"; pass a number for {name}"
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim:
        return f"; pass one number (a 0-d tensor or .item() of a one-element one), not {value.ndim}-d data"
    if isinstance(value, (bool, np.bool_)):
        return f"; pass a number for {name}, not True/False"
    return ""


def number(name: str, value, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, optional: bool = False, finite: bool = True, hint: str = "") -> float | None:
    """``value`` as a Python float, checked: a real number (any of the types the module docstring lists), finite
    unless ``finite=False`` (then NaN is still refused), within ``[low, high]`` (an end excluded when
    ``low_open`` / ``high_open``); ``None`` passes through when ``optional``. Raises ValueError naming ``name``,
    the value and what to pass (``hint`` adds a reason, e.g. ``"the paper uses 1"``)."""
    if value is None and optional:
        return None
    v = scalar(value)
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
    if ok:
        v = float(v)
        ok = not math.isnan(v) and (math.isfinite(v) or not finite)
        ok = ok and (low is None or (v > low if low_open else v >= low))
        ok = ok and (high is None or (v < high if high_open else v <= high))
    if ok:
        return v
    lo = "" if low is None else f"{'(' if low_open else '['}{low:g}, "
    hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
    where = (f" in {lo}{hi}" if low is not None and high is not None else
             f" {'>' if low_open else '>='} {low:g}" if low is not None else
             f" {'<' if high_open else '<='} {high:g}" if high is not None else "")
    kind = "a finite number" if finite else "a number (not NaN)"
    raise ValueError(f"{name} must be {kind}{where}{' (' + hint + ')' if hint else ''}, got {describe(value)}"
                     f"{_fix(name, value)}{' (or None for the default)' if optional else ''}")


def whole(name: str, value, low: int = 1, *, high: int | None = None, optional: bool = False,
          hint: str = "") -> int | None:
    """``value`` as a Python int ``>= low`` (and ``<= high``): a Python or NumPy integer, or a 0-d integer array or
    tensor; not a bool or a float. ``None`` passes through when ``optional``."""
    if value is None and optional:
        return None
    v = scalar(value)
    if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low and (high is None or v <= high):
        return int(v)
    where = f" in [{low}, {high}]" if high is not None else f" >= {low}"
    fix = _fix(name, value)
    if not fix and isinstance(v, float) and v.is_integer():
        fix = f"; pass it as an int: {name}={int(v)}"
    raise ValueError(f"{name} must be a whole number{where}{' (' + hint + ')' if hint else ''}, got "
                     f"{describe(value)}{fix}{' (or None for the default)' if optional else ''}")


def flag(name: str, value) -> bool:
    """``value`` as a bool: ``True`` / ``False``, a NumPy bool or a 0-d bool tensor."""
    v = scalar(value)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise ValueError(f"{name} must be True or False, got {describe(value)}")


_DEVICES = "'cpu', 'cuda', 'cuda:0' or 'mps' (or None for the best available)"


def device(value, name: str = "device") -> torch.device:
    """``value`` (a string or a ``torch.device``) as a device this machine can compute on: not an unknown name,
    not ``"meta"`` (shapes only, no values), not a GPU that is not there."""
    if isinstance(value, torch.device):
        dev = value
    elif isinstance(value, str):
        try:
            dev = torch.device(value)
        except RuntimeError:
            raise ValueError(f"{name}={value!r} is not a device; pass {_DEVICES}") from None
    else:
        raise ValueError(f"{name} must be a device name or a torch.device, got {describe(value)}; pass {_DEVICES}")
    if dev.type == "meta":
        raise ValueError(f"{name}={str(dev)!r} holds shapes only, no values, so nothing can be computed on it; "
                         f"pass {_DEVICES}")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ValueError(f"{name}={str(dev)!r}: this machine has {found} CUDA GPU(s); pass 'cpu' or None (the best "
                         f"available)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={str(dev)!r}: Apple's MPS is not available here; pass 'cpu' or None")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name}={str(dev)!r}: gregnb computes on cpu, cuda or mps; pass {_DEVICES}")
    return dev


def module(name: str, model) -> nn.Module:
    """``model`` checked: an ``nn.Module`` whose weights hold values (not on the meta device)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch nn.Module (e.g. gregnb.models.build_model(...)), got "
                        f"{describe(model)}")
    if any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()]):
        raise ValueError(f"{name}'s weights are on the meta device (shapes only, no values); build it on a real "
                         f"device, or give it values: {name}.to_empty(device='cpu') then load_state_dict(...)")
    return model


def no_inference_mode(what: str) -> None:
    """Refuse to run ``what`` (which needs gradients: training) inside ``torch.inference_mode()``."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{what} needs gradients, but it was called inside torch.inference_mode(), where none "
                           f"can be taken; call it outside that block")


@contextlib.contextmanager
def gradients() -> Iterator[None]:
    """Gradients on for the block, also inside a caller's ``torch.no_grad()`` or ``torch.inference_mode()`` (a
    measurement that differentiates the model, such as an input gradient, then works anywhere)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def gradient_input(x: torch.Tensor) -> torch.Tensor:
    """``x``, copied when it was made inside ``torch.inference_mode()`` (such a tensor cannot take part in
    autograd); the same values either way."""
    return x.clone() if x.is_inference() else x
