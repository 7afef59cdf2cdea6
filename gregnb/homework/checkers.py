"""Instant-feedback checkers for the homework. Equation labels (E1)-(E9) refer to docs/method.md.

Each ``check_*`` runs a student's function on fixed and random cases, compares it with the
reference implementation in :mod:`gregnb` and prints a friendly verdict:

* **exact** - every case within 1e-6 (relative) of the reference;
* **close** - within 1e-3: probably a numerical detail (float32, a different but equivalent formula);
* **wrong** - with the largest difference, one failing case, and a hint when the answer matches a
  typical mistake (wrong sign, OOD as positive, squared norm, unmasked penalty, forgotten temperature...).

The verdict never shows the reference code. A return value that cannot be checked (``None``, text, the
wrong shape, NaN) gets a message that says so instead of a crash; arrays, lists and tensors on any
device are accepted; a warning the student's code emits is reported (nbgrader gives 0 to a test cell
that writes to stderr). Each checker also returns a :class:`Verdict` so tests and graders can use it:
``check_energy(my_energy).ok``. A function that still raises
``NotImplementedError`` (an unanswered stub) gets a message and the error is raised again, so a
notebook stops at the first unanswered question.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..lipschitz import certified_radius
from ..losses import greg_penalty
from ..metrics import fpr_at_tpr
from ..scores import energy
from .verdict import BadResult, Verdict, _as_result, _checked, _describe, _run

__all__ = ["Verdict", "check_energy", "check_fpr95", "check_greg_penalty", "check_sampler", "check_pick_means",
           "check_certified_radius", "reference_two_way_selection"]

def _energy_cases(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cases = [("logits [[0, 0]], T=1", torch.tensor([[0.0, 0.0]]), 1.0),
             ("logits [[log 3, 0]], T=1", torch.tensor([[math.log(3.0), 0.0]]), 1.0),
             ("two rows, T=2", torch.tensor([[5.0, 1.0, 0.0], [15.0, 11.0, 10.0]]), 2.0),
             ("large logits (1e4), T=1", torch.tensor([[1e4, 0.0, -1e4]]), 1.0)]
    for T in (0.1, 1.0, 10.0, 1000.0):
        cases.append((f"random 16x10 logits, T={T}", 5 * torch.randn(16, 10, generator=g), T))
    return cases


def check_energy(student_energy: Callable[[torch.Tensor, float], torch.Tensor]) -> Verdict:
    """HW1: ``student_energy(logits (N, K), T) -> (N,)`` must equal ``-T * logsumexp(logits / T)``."""
    data = {d: (z, T) for d, z, T in _energy_cases()}
    cases = [(d, (lambda z=z, T=T: student_energy(z.clone(), T)), (lambda z=z, T=T: energy(z, T)))
             for d, (z, T) in data.items()]
    mistakes = [
        ("the sign is flipped: the energy is MINUS T log-sum-exp (low = ID)", lambda d: -energy(*data[d])),
        ("the temperature is missing: divide the logits by T inside and multiply by T outside",
         lambda d: energy(data[d][0], 1.0)),
        ("the factor T in front is missing: E = -T * logsumexp(z / T)", lambda d: energy(*data[d]) / data[d][1]),
        ("this is the negative maximum logit, not the energy: use log-sum-exp", lambda d: -data[d][0].amax(1)),
        ("overflow: exp of large logits is inf; subtract the maximum first (or use torch.logsumexp)",
         lambda d: -data[d][1] * torch.log(torch.exp(data[d][0] / data[d][1]).sum(1))),
    ]
    return _run("energy", cases, mistakes, student_energy)


def _fpr_cases(seed: int = 0):
    rng = np.random.default_rng(seed)
    cases = [("ID 1..20, OOD (0, 2, 5, 1)", np.arange(1, 21, dtype=float), np.array([0.0, 2.0, 5.0, 1.0])),
             ("perfectly separated", np.array([5.0, 6.0, 7.0]), np.array([0.0, 1.0])),
             ("ties", rng.integers(0, 5, 200).astype(float), rng.integers(0, 4, 150).astype(float))]
    for i in range(3):
        cases.append((f"random normal scores #{i}", rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.5, 250)))
    return cases


def check_fpr95(student_fpr95: Callable[[np.ndarray, np.ndarray], float]) -> Verdict:
    """HW1: ``student_fpr95(id_scores, ood_scores) -> float`` with HIGH = ID and ID as the positive class:
    the fraction of OOD scores >= t, t the largest threshold keeping at least 95% of ID scores >= t."""
    data = {d: (a, b) for d, a, b in _fpr_cases()}
    cases = [(d, (lambda a=a, b=b: student_fpr95(a.copy(), b.copy())), (lambda a=a, b=b: fpr_at_tpr(a, b)))
             for d, (a, b) in data.items()]
    mistakes = [
        ("this is the OOD-positive reading (share of ID rejected at 95% OOD recall); here ID is positive",
         lambda d: fpr_at_tpr(*data[d], positive="ood")),
        ("your scores are the wrong way round: HIGH must mean ID (negate energies)",
         lambda d: fpr_at_tpr(-data[d][0], -data[d][1])),
        ("you return a percentage: return a fraction in [0, 1]", lambda d: 100 * fpr_at_tpr(*data[d])),
        ("use >= t for OOD scores at the threshold (ties count as accepted)",
         lambda d: float(np.mean(data[d][1] > _thr(data[d][0])))),
    ]
    return _run("FPR95", cases, mistakes, student_fpr95)


def _thr(id_s: np.ndarray) -> float:
    from ..metrics import threshold_at_tpr

    return threshold_at_tpr(id_s)


# ------------------------------------------------------------------ HW2: the GReg penalty

def _penalty_model(seed: int):
    from ..models import MLP

    torch.manual_seed(seed)
    return MLP(2, 3, hidden=(16, 16), activation="softplus").double().eval()


def _penalty_cases():
    out = {}
    for seed in range(4):
        model = _penalty_model(seed)
        g = torch.Generator().manual_seed(seed)
        x = 3 * torch.randn(12, 2, generator=g, dtype=torch.float64)
        with torch.no_grad():
            e = energy(model(x))
        n_id = 5
        m_in, m_out = float(e[:n_id].median()), float(e[n_id:].median())
        if m_in >= m_out:
            m_out = m_in + 0.5
        out[f"MLP seed {seed}, 5 ID + 7 OOD rows, m_in={m_in:.2f}, m_out={m_out:.2f}"] = (model, x, n_id, m_in, m_out)
    return out


def _ref_penalty(model, x, n_id, m_in, m_out, **kw):
    xg = x.clone().requires_grad_(True)
    return greg_penalty(xg, energy(model(xg)), n_id, m_in, m_out, **kw).detach()


def _per_row_norms(model, x):
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(model(xg)).sum(), xg)
    return g.norm(dim=1), energy(model(x)).detach()


def check_greg_penalty(student_penalty: Callable) -> Verdict:
    """HW2: ``student_penalty(model, x, n_id, m_in, m_out) -> scalar tensor``: (E6), the mean over ID
    rows of 1{E <= m_in} ||grad_x E|| plus the mean over OOD rows of 1{E >= m_out} ||grad_x E||,
    differentiable w.r.t. the model's parameters (``create_graph=True``)."""
    data = _penalty_cases()

    def call(d):
        model, x, n_id, m_in, m_out = data[d]
        out = student_penalty(model, x.clone(), n_id, m_in, m_out)
        if not isinstance(out, torch.Tensor):
            _checked(out)  # None, text, ...: says what is wrong
            raise BadResult(f"return a torch tensor connected to the weights, not {_describe(out)}")
        if out.numel() != 1:
            raise BadResult(f"return one number (a scalar tensor), not shape {tuple(out.shape)}: "
                            f"the mean over the ID rows plus the mean over the OOD rows")
        if not out.requires_grad:
            raise BadResult("the penalty is not differentiable w.r.t. the weights: "
                            "use torch.autograd.grad(..., create_graph=True)")
        return out.reshape(())

    def variant(d, kind):
        model, x, n_id, m_in, m_out = data[d]
        g, e = _per_row_norms(model, x)
        m_id, m_ood = (e[:n_id] <= m_in).double(), (e[n_id:] >= m_out).double()
        if kind == "squared":
            return (m_id * g[:n_id] ** 2).mean() + (m_ood * g[n_id:] ** 2).mean()
        if kind == "unmasked":
            return g[:n_id].mean() + g[n_id:].mean()
        if kind == "flipped":
            return ((1 - m_id) * g[:n_id]).mean() + ((1 - m_ood) * g[n_id:]).mean()
        if kind == "allmean":
            return torch.cat([m_id * g[:n_id], m_ood * g[n_id:]]).mean()
        if kind == "masked_mean":
            a = g[:n_id][m_id.bool()].mean() if m_id.any() else 0.0
            b = g[n_id:][m_ood.bool()].mean() if m_ood.any() else 0.0
            return a + b
        raise AssertionError(kind)

    cases = [(d, (lambda d=d: call(d)), (lambda d=d: _ref_penalty(*data[d]))) for d in data]
    mistakes = [
        ("you squared the norm: the penalty (E6 in docs/method.md) uses the plain L2 norm ||grad_x E||",
         lambda d: variant(d, "squared")),
        ("you penalise every sample: only ID rows with E <= m_in and OOD rows with E >= m_out count",
         lambda d: variant(d, "unmasked")),
        ("the masks are reversed: penalise the samples PAST their margins (correctly detected)",
         lambda d: variant(d, "flipped")),
        ("take the two means separately (over the n_id ID rows and over the OOD rows), not one mean over all",
         lambda d: variant(d, "allmean")),
        ("average over ALL rows of each part (masked-out rows count as zeros), not only over the masked ones",
         lambda d: variant(d, "masked_mean")),
    ]
    return _run("GReg penalty", cases, mistakes, student_penalty)


# ------------------------------------------------------------------ HW3: two-way selection

def reference_two_way_selection(labels: torch.Tensor, energies: torch.Tensor, n_per_cluster: int = 1) -> torch.Tensor:
    """Sorted indices of each cluster's ``n_per_cluster`` lowest- and highest-energy members (distinct)."""
    picks = []
    for c in torch.unique(labels).tolist():
        members = (labels == c).nonzero().squeeze(1)
        order = members[energies[members].argsort()]
        k = min(n_per_cluster, len(order))
        low = order[:k].tolist()
        high = order[max(k, len(order) - n_per_cluster):].tolist()
        picks += low + high
    return torch.tensor(sorted(set(picks)), dtype=torch.long)


def _selection_cases():
    g = torch.Generator().manual_seed(0)
    out = {"3 clusters, 1 per cluster": (torch.tensor([0, 0, 1, 1, 1, 2, 2, 0]),
                                         torch.tensor([0.5, -1.0, 3.0, 2.0, 4.0, -5.0, -6.0, 2.0]), 1),
           "a cluster of one member": (torch.tensor([0, 1, 1, 1]), torch.tensor([1.0, 2.0, 3.0, 4.0]), 1)}
    for i, n in enumerate((1, 2, 3)):
        labels = torch.randint(0, 8, (120,), generator=g)
        out[f"random: 120 candidates, 8 clusters, {n} per cluster"] = (labels, torch.randn(120, generator=g), n)
    return out


def check_sampler(student_select: Callable) -> Verdict:
    """HW3: ``student_select(labels (N,), energies (N,), n_per_cluster) -> indices``: for every cluster, its
    ``n_per_cluster`` lowest-energy AND highest-energy members (each index once). Order does not matter."""
    data = _selection_cases()

    def call(d):
        labels, e, n = data[d]
        raw = student_select(labels.clone(), e.clone(), n)
        if isinstance(raw, (torch.Tensor, np.ndarray)) and raw.dtype in (torch.bool, np.bool_):
            raise BadResult("you return a boolean mask: return the indices (mask.nonzero().squeeze(1))")
        out = _checked(raw)
        if out.ndim > 1 and out.numel() != max(out.shape):
            raise BadResult(f"return a 1-D collection of indices, not shape {tuple(out.shape)}")
        if out.numel() and (out != out.round()).any():
            raise BadResult("return integer indices into the candidates (not energies or a mask)")
        out = out.long().flatten()
        if len(set(out.tolist())) != len(out):
            raise BadResult("some indices appear more than once: return each index once (in a small cluster the "
                            "lowest- and highest-energy member can be the same)")
        return out.sort().values

    def variant(d, kind):
        labels, e, n = data[d]
        if kind == "one_way":
            idx = []
            for c in torch.unique(labels).tolist():
                m = (labels == c).nonzero().squeeze(1)
                idx += m[e[m].argsort()[:n]].tolist()
            return torch.tensor(sorted(idx))
        if kind == "greedy":
            k = len(reference_two_way_selection(labels, e, n))
            return torch.tensor(sorted(e.argsort()[:k].tolist()))
        if kind == "high_only":
            idx = []
            for c in torch.unique(labels).tolist():
                m = (labels == c).nonzero().squeeze(1)
                idx += m[e[m].argsort(descending=True)[:n]].tolist()
            return torch.tensor(sorted(idx))
        raise AssertionError(kind)

    cases = [(d, (lambda d=d: call(d)), (lambda d=d: reference_two_way_selection(*data[d]))) for d in data]
    mistakes = [
        ("only the lowest-energy members: two-way also takes each cluster's HIGHEST-energy members",
         lambda d: variant(d, "one_way")),
        ("these are the lowest energies overall (greedy): pick within each cluster", lambda d: variant(d, "greedy")),
        ("only the highest-energy members: also take each cluster's LOWEST-energy ones",
         lambda d: variant(d, "high_only")),
    ]
    return _run("two-way selection", cases, mistakes, student_select)


def check_pick_means(mean_low, mean_high, picks, labels: torch.Tensor, energies: torch.Tensor) -> Verdict:
    """HW3 Q2: for the student's OWN ``picks`` (indices into ``energies``), ``mean_low`` must be the mean
    energy of the picks that are the lowest-energy member of their cluster and ``mean_high`` the mean
    energy of the other picks (NaN if there are none). A mistake in the selection itself is not
    counted again here: only the split and the means are checked."""
    n = len(torch.as_tensor(energies).flatten())
    idx, why = _as_result(picks)
    if why is None and (idx.numel() == 0 or (idx != idx.round()).any() or (idx < 0).any() or (idx >= n).any()):
        why = f"it must return a non-empty collection of indices between 0 and {n - 1}"
    if why:
        v = Verdict("pick means", "error", hint=f"fix your selection function first: {why}", n_cases=2)
        print(v)
        return v
    idx = idx.long().flatten()
    labels, e = torch.as_tensor(labels).flatten().cpu(), torch.as_tensor(energies).detach().flatten().cpu().double()
    lowest = {c: e[labels == c].min() for c in torch.unique(labels).tolist()}
    hard = torch.tensor([bool(e[i] == lowest[int(labels[i])]) for i in idx.tolist()])
    exp_low, exp_high = e[idx][hard].mean(), e[idx][~hard].mean()  # NaN when empty
    n_hard = int(hard.sum())
    descs = {"mean_low": f"mean_low (your {n_hard} picks that are their cluster's lowest)",
             "mean_high": f"mean_high (your {len(idx) - n_hard} other picks; NaN if none)"}
    values = {descs["mean_low"]: mean_low, descs["mean_high"]: mean_high}
    expected = {descs["mean_low"]: exp_low, descs["mean_high"]: exp_high}
    cases = [(k, (lambda k=k: values[k]), (lambda k=k: expected[k])) for k in values]
    other = dict(zip(values, reversed(values)))
    mistakes = [
        ("mean_low and mean_high are swapped: the hard picks are the LOW-energy ones", lambda k: expected[other[k]]),
        ("this is the mean over all your picks: split them into each cluster's lowest member and the rest",
         lambda k: e[idx].mean()),
        ("this is the mean over all candidates: average over your picks only", lambda k: e.mean()),
    ]
    return _run("pick means", cases, mistakes, None)


# ------------------------------------------------------------------ HW4: certified radius

def _radius_cases():
    g = torch.Generator().manual_seed(0)
    e_rand = 3 * torch.randn(50, generator=g) - 5
    return {"E=(-9,-6,-2), γ=-5, L=2": (torch.tensor([-9.0, -6.0, -2.0]), -5.0, 2.0, None),
            "per-sample L, eps=1.5": (torch.tensor([-9.0, -6.0, -2.0]), -5.0, torch.tensor([4.0, 0.5, 1.0]), 1.5),
            "random energies, L=0.7": (e_rand, -5.0, 0.7, None),
            "random energies, per-sample L, eps=2": (e_rand, -4.0, 0.2 + torch.rand(50, generator=g), 2.0)}


def check_certified_radius(student_radius: Callable) -> Verdict:
    """HW4: ``student_radius(energies, threshold, lipschitz, eps=None) -> (N,)`` radii (E8):
    ``|threshold - E| / L``, capped at ``eps`` when given. LOW energy = ID."""
    data = _radius_cases()

    def call(d):
        e, t, lip, eps = data[d]
        return student_radius(e.clone(), t, lip, eps=eps)

    def variant(d, kind):
        e, t, lip, eps = data[d]
        lip = torch.as_tensor(lip, dtype=torch.float64)
        e = e.double()
        if kind == "no_abs":
            r = (t - e) / lip
        elif kind == "times":
            r = (t - e).abs() * lip
        elif kind == "no_cap":
            return certified_radius(e, t, lip)
        else:
            raise AssertionError(kind)
        return r.clamp_max(eps) if eps is not None else r

    cases = [(d, (lambda d=d: call(d)), (lambda d=d: certified_radius(*data[d][:3], eps=data[d][3]))) for d in data]
    mistakes = [
        ("negative radii: OOD samples (E > threshold) need the distance E - threshold; use the absolute margin",
         lambda d: variant(d, "no_abs")),
        ("divide the margin by the Lipschitz constant: a steeper score gives a SMALLER radius",
         lambda d: variant(d, "times")),
        ("cap the radius at eps: the constant only holds on the ball of radius eps", lambda d: variant(d, "no_cap")),
    ]
    return _run("certified radius", cases, mistakes, student_radius)
