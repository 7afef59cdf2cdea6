"""The verdict machinery behind the homework checkers: run a student's function on cases, compare with the
reference, turn whatever comes back (or is raised, or warned) into a friendly :class:`Verdict`."""
from __future__ import annotations

import math
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

__all__ = ["Verdict", "EXACT", "CLOSE"]

EXACT, CLOSE = 1e-6, 1e-3


@dataclass
class Verdict:
    """The outcome of a check: ``status`` is "exact", "close", "wrong" or "error"."""

    name: str
    status: str
    max_diff: float = 0.0
    failing_case: str | None = None
    hint: str | None = None
    n_cases: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("exact", "close")

    def __str__(self) -> str:
        icon = {"exact": "✅", "close": "🟡", "wrong": "❌", "error": "💥"}[self.status]
        lines = [f"{icon} {self.name}: {self.status.upper()} on {self.n_cases} cases"]
        if self.status == "close":
            lines.append(f"   largest difference {self.max_diff:.2e}: fine, but check float precision.")
        if self.status in ("wrong", "error"):
            if self.status == "wrong" and math.isfinite(self.max_diff):
                lines.append(f"   largest difference from the expected result: {self.max_diff:.3g}")
            if self.failing_case:
                lines.append(f"   a failing case: {self.failing_case}")
            if self.hint:
                lines.append(f"   hint: {self.hint}")
        lines += [f"   {d}" for d in self.details]
        return "\n".join(lines)

    def why(self) -> str:
        """One line for an assertion message: what is wrong (the hint) or where (the failing case); "" when ok."""
        if self.ok:
            return ""
        where = f" (failing case: {self.failing_case})" if self.failing_case else ""
        return f"{self.name} is not right yet: {self.hint or 'read the verdict above'}{where}"

    def _repr_pretty_(self, p, cycle):  # IPython shows the friendly text
        p.text(str(self))


def _describe(value) -> str:
    """A short description of a returned value, for messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} ({value.dtype}, on {value.device})"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def _as_result(value) -> tuple[torch.Tensor | None, str | None]:
    """A student's return value as a float64 CPU tensor, or ``(None, why it cannot be one)``."""
    if value is None:
        return None, "your function returned None: did you forget the `return` statement?"
    if isinstance(value, (str, bytes)):
        return None, f"your function returned a string ({_describe(value)}): return numbers, not text"
    if isinstance(value, torch.Tensor):
        try:
            value = value.detach().cpu()  # any device is fine
        except Exception:  # e.g. the "meta" device holds no values
            return None, f"your function returned {_describe(value)}, whose values cannot be read"
        if value.is_complex():
            return None, f"your function returned complex numbers ({_describe(value)})"
        return value.to(torch.float64), None
    if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
        try:
            return torch.stack([torch.as_tensor(v).detach().cpu().to(torch.float64).reshape(()) for v in value]), None
        except (RuntimeError, TypeError, ValueError):
            return None, f"your function returned a {type(value).__name__} of tensors: return one tensor"
    try:
        out = torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError):
        return None, f"your function returned {_describe(value)}, which is not a number, array or tensor"
    return out, None


def _shape_hint(got: torch.Tensor, want: torch.Tensor) -> str:
    g, w = tuple(got.shape), tuple(want.shape)
    if got.numel() == want.numel():
        return f"you return shape {g}, expected {w}: same values, wrong shape (reshape/squeeze it)"
    if len(w) == 0:
        return f"you return shape {g}, expected a single number"
    if len(w) == 1 and len(g) >= 1 and g[0] == w[0]:
        return f"you return shape {g}, expected {w}: one value per row (reduce over the other dimensions)"
    return f"you return shape {g}, expected {w}"


def _diff(a: torch.Tensor, b) -> float:
    """Largest relative difference of two same-shape results (inf if NaN appears where it should not)."""
    b = torch.as_tensor(b, dtype=torch.float64).detach().cpu()
    if a.numel() == 0:
        return 0.0
    both_inf = torch.isinf(a) & torch.isinf(b) & (torch.sign(a) == torch.sign(b))
    both_nan = torch.isnan(a) & torch.isnan(b)
    d = ((a - b).abs() / (1.0 + b.abs()))
    d = torch.where(both_inf | both_nan, torch.zeros_like(d), d)
    if torch.isnan(d).any():
        return math.inf
    return float(d.max())


class BadResult(Exception):
    """Raised by a checker's call wrapper when the student's return value cannot be checked."""


def _checked(value) -> torch.Tensor:
    """``value`` as a float64 CPU tensor, or :class:`BadResult` with a message saying what is wrong."""
    out, why = _as_result(value)
    if why:
        raise BadResult(why)
    return out


def _safe(wrong: Callable[[str], object], cases) -> bool:
    try:
        for c in cases:
            wrong(c[0])
    except Exception:
        return False
    return True


def _matches(outputs: list[torch.Tensor], wrong_cases: list[int], wrong: list | None) -> bool:
    """True if, in every case the student got wrong, the output equals the typical-mistake result
    (within CLOSE)."""
    if wrong is None or not wrong_cases:
        return False
    for i in wrong_cases:
        w = torch.as_tensor(wrong[i], dtype=torch.float64).detach().cpu()
        if outputs[i].shape != w.shape or _diff(outputs[i], w) > CLOSE:
            return False
    return True


def _call(call: Callable[[], object], notes: list[str]):
    """Run one student call; warnings it emits become notes (under nbgrader a warning on stderr
    costs the test cell's points, so the student should hear about it here)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = call()
    for w in caught:
        note = (f"⚠️ your code printed a warning ({w.category.__name__}: {str(w.message).splitlines()[0][:120]}); "
                f"graded cells must run without warnings, so fix its cause")
        if note not in notes:
            notes.append(note)
    return got


def _run(name: str, cases: list[tuple[str, Callable[[], object], Callable[[], object]]],
         mistakes: list[tuple[str, Callable[[str], object]]], student_fn: Callable,
         diagnose: Callable[[list, list[int]], str | None] | None = None) -> Verdict:
    """cases: (description, student call, expected). mistakes: (hint, fn(case description) -> wrong result).
    ``diagnose(outputs, wrong case indices) -> hint or None``: a last try at a hint when no mistake matched."""
    worst, worst_case, shape_hint, nan_case = 0.0, None, None, None
    outputs, notes, wrong_cases = [], [], []

    def error(case: str, hint: str) -> Verdict:
        v = Verdict(name, "error", failing_case=case, hint=hint, n_cases=len(cases), details=notes)
        print(v)
        return v

    for desc, call, expected in cases:
        try:
            got = _call(call, notes)
        except NotImplementedError:
            v = Verdict(name, "error", failing_case=desc, hint="the function still raises NotImplementedError: "
                                                               "replace the stub with your code", n_cases=len(cases))
            print(v)
            raise  # the notebook stops here, at the unanswered question, with the stub's own message
        except BadResult as bad:
            return error(desc, str(bad))
        except Exception as err:
            tb = traceback.format_exception_only(type(err), err)[-1].strip()
            return error(f"{desc} raised {tb}", "read the error; check shapes and types of what you return")
        got, why = _as_result(got)
        if why:
            return error(desc, why)
        want = torch.as_tensor(expected(), dtype=torch.float64).detach().cpu()
        if want.ndim == 0 and got.numel() == 1:
            got = got.reshape(())  # a one-element array for a single number is fine
        outputs.append(got)
        if got.shape != want.shape:
            d = math.inf
            shape_hint = shape_hint or _shape_hint(got, want)
        else:
            d = _diff(got, want)
            if nan_case is None and torch.isnan(got).any() and not torch.isnan(want).any():
                nan_case = desc
        if d > CLOSE:
            wrong_cases.append(len(outputs) - 1)
        if d > worst:
            worst, worst_case = d, desc
    status = "exact" if worst <= EXACT else "close" if worst <= CLOSE else "wrong"
    hint = None
    if status == "wrong":
        for text, wrong in mistakes:
            if _matches(outputs, wrong_cases, [wrong(c[0]) for c in cases] if _safe(wrong, cases) else None):
                hint = text
                break
        hint = hint or shape_hint
        if hint is None and diagnose is not None:
            hint = diagnose(outputs, wrong_cases)
        if hint is None and nan_case is not None:
            hint = f"your result contains NaN (first in case: {nan_case}); look for 0/0, log of 0 or inf - inf"
    v = Verdict(name, status, worst, worst_case if status == "wrong" else None, hint, len(cases), notes)
    print(v)
    return v


# ------------------------------------------------------------------ HW1: energy and FPR95
