"""Checkers for the chapters' exercises whose answer is a number or a function.

Each chapter ends with exercises; every one has a worked solution to reveal under it (a collapsed
"Solution (try first)" block), and those listed in :data:`EXERCISES` also have a checker here:

    from gregnb.homework.exercises import check_exercise
    check_exercise("03.2", fd_grad_norm)   # your function, or your number

An exercise id is ``"NN.k"``: chapter ``NN``, exercise ``k`` of its Exercises section. A check compares the
answer with an independent computation (a brute-force loop, autograd, or the package's reference code) on
fixed and random cases, and prints a :class:`~gregnb.homework.verdict.Verdict` the way the homework checkers
do (exact / close / wrong with a hint / error). ``answer=None`` (the blank template in the notebooks) only
prints "not answered yet", so a chapter executed top to bottom never fails on an unanswered exercise. An id
that does not exist raises ``ValueError``; a function where a number is expected (or the reverse) raises
``TypeError``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..losses import greg_penalty
from ..metrics import auroc
from ..scores import energy
from .verdict import BadResult, Verdict, _checked, _describe, _run

__all__ = ["EXERCISES", "check_exercise"]


@dataclass(frozen=True)
class Exercise:
    """One checkable exercise: ``kind`` is "number" or "function"; ``answer`` says what to pass."""

    title: str
    kind: str
    answer: str
    check: Callable


def _number_cases(value, expected: float) -> list:
    return [("your number", (lambda: value), (lambda: expected))]


# ------------------------------------------------------------------ 01: energy scores

def _auroc_cases():
    rng = np.random.default_rng(1)
    cases = [("ID (3, 4), OOD (1, 3)", np.array([3.0, 4.0]), np.array([1.0, 3.0])),
             ("perfectly separated", np.array([5.0, 6.0]), np.array([0.0, 1.0, 2.0]))]
    cases.append(("integer scores with many ties", rng.integers(0, 6, 150).astype(float),
                  rng.integers(0, 5, 120).astype(float)))
    cases.append(("random normal scores", rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.5, 170)))
    return cases


def _check_01_1(fn) -> Verdict:
    data = {d: (a, b) for d, a, b in _auroc_cases()}
    cases = [(d, (lambda a=a, b=b: fn(a.copy(), b.copy())), (lambda a=a, b=b: auroc(a, b))) for d, (a, b) in data.items()]

    def pairs(d, tie):
        a, b = data[d]
        return float(((a[:, None] > b[None]) + tie * (a[:, None] == b[None])).mean())

    mistakes = [("the scores are the wrong way round: count pairs where the ID score is HIGHER (you get 1 - AUROC)",
                 lambda d: 1.0 - auroc(*data[d])),
                ("a tie counts one half, not zero", lambda d: pairs(d, 0.0)),
                ("a tie counts one half, not one", lambda d: pairs(d, 1.0)),
                ("return a fraction in [0, 1], not a percentage", lambda d: 100 * auroc(*data[d]))]
    return _run("Exercise 01.1 (AUROC by pairs)", cases, mistakes, fn)


def _check_01_4(value) -> Verdict:
    want = math.log(10.0)
    mistakes = [("use the natural logarithm: log-sum-exp is built from exp", lambda d: 1.0),
                ("the bound is T log K (a logarithm), not K", lambda d: 10.0),
                ("they can differ: log-sum-exp exceeds the largest term by at most log of the number of terms",
                 lambda d: 0.0),
                ("K = 10 terms, so log K, not log(K - 1)", lambda d: math.log(9.0))]
    return _run("Exercise 01.4 (largest gap between −E and the max logit)", _number_cases(value, want), mistakes, None)


# ------------------------------------------------------------------ 02: training with outliers

def _distance_cases():
    g = torch.Generator().manual_seed(2)
    return {f"{n} test rows, {m} pool rows, {d} features": (torch.randn(n, d, generator=g, dtype=torch.float64),
                                                             torch.randn(m, d, generator=g, dtype=torch.float64))
            for n, m, d in ((1, 1, 3), (5, 9, 2), (40, 70, 16))}


def _brute_nearest(test: torch.Tensor, pool: torch.Tensor, reduce=min, squared=False) -> torch.Tensor:
    a, b = test.numpy(), pool.numpy()
    out = [reduce(float(np.sum((r - p) ** 2)) ** (1.0 if squared else 0.5) for p in b) for r in a]
    return torch.tensor(out, dtype=torch.float64)


def _check_02_5(fn) -> Verdict:
    data = _distance_cases()
    cases = [(d, (lambda t=t, p=p: fn(t.clone(), p.clone())), (lambda t=t, p=p: _brute_nearest(t, p)))
             for d, (t, p) in data.items()]
    mistakes = [("you return squared distances: take the square root (torch.cdist gives plain distances)",
                 lambda d: _brute_nearest(*data[d], squared=True)),
                ("this is the distance to the FARTHEST pool row: take the minimum", lambda d: _brute_nearest(*data[d], max)),
                ("you return the index of the nearest pool row: return its distance (.values, not .indices)",
                 lambda d: torch.cdist(*data[d]).argmin(1).double()),
                ("this is the mean distance to the pool: take the minimum over the pool rows",
                 lambda d: torch.cdist(*data[d]).mean(1))]
    return _run("Exercise 02.5 (distance to the nearest pool image)", cases, mistakes, fn)


# ------------------------------------------------------------------ 03: gradient regularisation

def _mlp(seed: int, d_in: int = 2, k: int = 3):
    from ..models import MLP

    torch.manual_seed(seed)
    return MLP(d_in, k, hidden=(16, 16), activation="softplus").double().eval()


def measured_ratio(n_id: int, n_ood: int, seed: int = 0) -> float:
    """``greg_penalty`` "paper" / "reference" on a batch of ``n_id`` + ``n_ood`` rows of a BatchNorm-free MLP."""
    model = _mlp(seed)
    x = (3 * torch.randn(n_id + n_ood, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    x.requires_grad_(True)
    e = energy(model(x))
    m_in = float(e[:n_id].detach().max()) + 0.5         # every ID row past m_in: the ID mask is all ones, so p > 0
    m_out = m_in + 0.5                           # the outliers above it are masked in, the others out
    p = greg_penalty(x, e, n_id, m_in, m_out)
    r = greg_penalty(x, e, n_id, m_in, m_out, convention="reference")
    return float((p / r).detach())


def _check_03_1(fn) -> Verdict:
    sizes = [(1, 1), (6, 6), (5, 7), (64, 64), (64, 128), (3, 20)]
    cases = [(f"n_id={a}, n_ood={b}", (lambda a=a, b=b: fn(a, b)), (lambda a=a, b=b: measured_ratio(a, b)))
             for a, b in sizes]
    size = dict(zip([c[0] for c in cases], sizes))
    mistakes = [("N counts every row of the batch: ID rows AND outlier rows", lambda d: float(size[d][0])),
                ("N counts every row of the batch: ID rows AND outlier rows", lambda d: float(size[d][1])),
                ("the ratio is the number of rows, not a product", lambda d: float(size[d][0] * size[d][1])),
                ("the two conventions differ by a factor: it is not 1", lambda d: 1.0)]
    return _run("Exercise 03.1 (paper / reference without BatchNorm)", cases, mistakes, fn)


def _fd_cases():
    from torch import nn

    torch.manual_seed(3)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).double().eval()
    mlp = _mlp(3)
    g = torch.Generator().manual_seed(3)
    out = {f"2-D MLP at point {i}": (lambda b: energy(mlp(b)), 2 * torch.randn(2, generator=g, dtype=torch.float64))
           for i in range(3)}
    out["8x8 image, a small conv net"] = (lambda b: energy(conv(b)), torch.rand(1, 8, 8, generator=g, dtype=torch.float64))
    return out


def _autograd_norm(f, x, ord=2):
    xg = x.clone().unsqueeze(0).requires_grad_(True)
    (g,) = torch.autograd.grad(f(xg).sum(), xg)
    return g.flatten().norm(p=ord).detach()


def _check_03_2(fn) -> Verdict:
    data = _fd_cases()
    cases = [(d, (lambda f=f, x=x: fn(f, x.clone())), (lambda f=f, x=x: _autograd_norm(f, x))) for d, (f, x) in data.items()]
    mistakes = [("twice the norm: central differences divide by 2h (the two points are 2h apart)",
                 lambda d: 2 * _autograd_norm(*data[d])),
                ("this is the squared norm: take the square root of the sum of squared partials",
                 lambda d: _autograd_norm(*data[d]) ** 2),
                ("this is the L1 norm (sum of |partials|): the penalty uses the L2 norm",
                 lambda d: _autograd_norm(*data[d], ord=1)),
                ("this is the largest |partial| alone: the penalty uses the L2 norm of all of them",
                 lambda d: _autograd_norm(*data[d], ord=math.inf))]
    return _run("Exercise 03.2 (finite-difference gradient norm)", cases, mistakes, fn)


def _msp_cases():
    out = {}
    for seed in range(3):
        model = _mlp(10 + seed, k=4)
        x = 2 * torch.randn(10, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        with torch.no_grad():
            p = torch.softmax(model(x), 1).amax(1)
        mid = lambda v: float(v.sort().values[len(v) // 2 - 1:len(v) // 2 + 1].mean())   # between two rows' MSPs
        t_in, t_out = mid(p[:4]), mid(p[4:])
        out[f"MLP seed {seed}, 4 ID + 6 OOD rows, t_in={t_in:.3f}, t_out={t_out:.3f}"] = (model, x, 4, t_in, t_out)
    return out


def reference_msp_penalty(model, x, n_id, t_in, t_out, kind="msp", masks="right", power=1.0) -> torch.Tensor:
    """Row by row: mean over ID rows of 1{MSP >= t_in} ||grad_x MSP|| plus mean over OOD rows of
    1{MSP <= t_out} ||grad_x MSP|| (``kind``/``masks``/``power``: the typical mistakes)."""
    vals = []
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        z = model(xi)
        p = torch.softmax(z, 1).amax()
        s = {"msp": p, "log": p.log(), "energy": energy(z)[0]}[kind]
        (g,) = torch.autograd.grad(s, xi)
        ok = bool(p >= t_in) if i < n_id else bool(p <= t_out)
        ok = {"right": ok, "flipped": not ok, "none": True}[masks]
        vals.append(float(ok) * g.norm().item() ** power)
    v = torch.tensor(vals, dtype=torch.float64)
    return v[:n_id].mean() + v[n_id:].mean()


def _check_03_6(fn) -> Verdict:
    data = _msp_cases()

    def call(d):
        out = fn(*data[d][:1], data[d][1].clone(), *data[d][2:])
        if not isinstance(out, torch.Tensor):
            _checked(out)
            raise BadResult(f"return a torch tensor connected to the weights, not {_describe(out)}")
        if out.numel() != 1:
            raise BadResult(f"return one number (a scalar tensor), not shape {tuple(out.shape)}")
        if not out.requires_grad:
            raise BadResult("the penalty is not differentiable w.r.t. the weights: "
                            "use torch.autograd.grad(..., create_graph=True)")
        return out.reshape(())

    cases = [(d, (lambda d=d: call(d)), (lambda d=d: reference_msp_penalty(*data[d]))) for d in data]
    mistakes = [("you differentiate the energy: this penalty flattens the MSP, the score OE's detector reads",
                 lambda d: reference_msp_penalty(*data[d], kind="energy")),
                ("this is the gradient of log MSP: a fine variant, but the checker asks for the MSP itself",
                 lambda d: reference_msp_penalty(*data[d], kind="log")),
                ("you penalise every row: only ID rows with MSP >= t_in and outliers with MSP <= t_out count",
                 lambda d: reference_msp_penalty(*data[d], masks="none")),
                ("the masks are reversed: penalise the rows the detector already gets RIGHT",
                 lambda d: reference_msp_penalty(*data[d], masks="flipped")),
                ("you squared the norm: use the plain L2 norm", lambda d: reference_msp_penalty(*data[d], power=2.0))]
    return _run("Exercise 03.6 (masked MSP-gradient penalty)", cases, mistakes, fn)


# ------------------------------------------------------------------ 06: Lipschitz and certified robustness

def _check_06_1(value) -> Verdict:
    mistakes = [("the gradient of LSE is a softmax vector: its L2 norm is at most its L1 norm, which is 1 "
                 "(it does not grow with K)", lambda d: math.sqrt(10.0)),
                ("log K is how far LSE lies above the max, not its Lipschitz constant", lambda d: math.log(10.0)),
                ("LSE is not constant: its gradient, the softmax, has norm up to 1", lambda d: 0.0)]
    return _run("Exercise 06.1 (the L2 Lipschitz constant of log-sum-exp)", _number_cases(value, 1.0), mistakes, None)


def _linear_cases():
    g = torch.Generator().manual_seed(6)
    out = {}
    for d, n in ((2, 5), (64, 7)):
        w, b, x = torch.randn(d, generator=g), float(torch.randn(1, generator=g)), torch.randn(n, d, generator=g)
        out[f"{d} inputs, {n} points"] = (w.double(), b, x.double(), float(-(x @ w + b).median()))
    return out


def _linear_radius(w, b, x, t, kind="right"):
    e = -(x @ w + b)
    if kind == "logit":
        return (t - (x @ w + b)).abs() / w.norm()
    gap = (t - e) if kind == "no_abs" else (t - e).abs()
    return gap / {"right": w.norm(), "no_abs": w.norm(), "squared": w.norm() ** 2, "l1": w.abs().sum()}[kind]


def _check_06_2(fn) -> Verdict:
    data = _linear_cases()
    cases = [(d, (lambda d=d: fn(data[d][0].clone(), data[d][1], data[d][2].clone(), data[d][3])),
              (lambda d=d: _linear_radius(*data[d]))) for d in data]
    mistakes = [("negative radii: use the absolute margin |threshold - E(x)|", lambda d: _linear_radius(*data[d], "no_abs")),
                ("divide by the L2 norm of w, not its square", lambda d: _linear_radius(*data[d], "squared")),
                ("the ℓ2 ball needs the L2 norm of w (the L1 norm is for an ℓ∞ ball)",
                 lambda d: _linear_radius(*data[d], "l1")),
                ("with one logit the energy is MINUS the logit: E(x) = -(w·x + b)",
                 lambda d: _linear_radius(*data[d], "logit"))]
    return _run("Exercise 06.2 (exact radius of a one-logit linear model)", cases, mistakes, fn)


EXERCISES: dict[str, Exercise] = {
    "01.1": Exercise("AUROC by comparing every ID score with every OOD score", "function",
                     "my_auroc(id_scores, ood_scores) -> float in [0, 1] (HIGH = ID; a tie counts 1/2)", _check_01_1),
    "01.4": Exercise("the largest possible |−E − max logit|", "number",
                     "one number: the largest possible gap for K = 10 classes and T = 1", _check_01_4),
    "02.5": Exercise("each test image's distance to its nearest pool image", "function",
                     "nearest_pool_distance(test_feats (N, D), pool_feats (M, D)) -> (N,) distances", _check_02_5),
    "03.1": Exercise("the ratio of the paper's penalty to the reference one, without BatchNorm", "function",
                     "ratio(n_id, n_ood) -> float: paper / reference for a batch of n_id ID and n_ood outlier rows",
                     _check_03_1),
    "03.2": Exercise("the input-gradient norm by finite differences", "function",
                     "fd_grad_norm(f, x) -> float: f maps a batch (B, *x.shape) to energies (B,), x is ONE input",
                     _check_03_2),
    "04.2": Exercise("the masked penalty on the MSP's input gradient", "function",
                     "msp_penalty(model, x, n_id, t_in, t_out) -> scalar tensor, differentiable w.r.t. the weights",
                     _check_03_6),
    "07.1": Exercise("the ℓ2 Lipschitz constant of log-sum-exp", "number", "one number", _check_06_1),
    "07.2": Exercise("the exact certified radius of a one-logit linear model", "function",
                     "linear_radius(w (D,), b, x (N, D), threshold) -> (N,) radii (ℓ2, LOW energy = ID)", _check_06_2),
}


def check_exercise(exercise: str, answer=None) -> Verdict | None:
    """Check your answer to a chapter exercise (an id of :data:`EXERCISES`, e.g. ``"03.2"``).

    ``answer``: your function or your number (what :data:`EXERCISES` [id].answer says); ``None`` prints
    "not answered yet" and returns None. Returns the :class:`Verdict` it prints.
    """
    if not isinstance(exercise, str) or exercise not in EXERCISES:
        raise ValueError(f"no checkable exercise {exercise!r}; the exercises with a checker are {sorted(EXERCISES)} "
                         f"(the others have a worked solution to reveal under them)")
    ex = EXERCISES[exercise]
    if answer is None:
        print(f"⏳ Exercise {exercise} ({ex.title}): not answered yet. Pass your {ex.kind}: {ex.answer}.")
        return None
    if ex.kind == "function" and not callable(answer):
        raise TypeError(f"exercise {exercise} expects a function, {ex.answer}; got {_describe(answer)}")
    if ex.kind == "number":
        if callable(answer) or isinstance(answer, (bool, str, bytes)):
            raise TypeError(f"exercise {exercise} expects {ex.answer}; got {_describe(answer)}")
        if isinstance(answer, (torch.Tensor, np.ndarray)):
            if answer.size == 1 if isinstance(answer, np.ndarray) else answer.numel() == 1:
                answer = float(answer.item())
            else:
                raise TypeError(f"exercise {exercise} expects one number, got {_describe(answer)}")
        if not isinstance(answer, numbers.Real):
            raise TypeError(f"exercise {exercise} expects one number, got {_describe(answer)}")
        answer = float(answer)
    return ex.check(answer)
