"""Checkers for Homework 6 (one GReg+ step from scratch), against the package's own code (equation labels such as
(E6) and Algorithm 1's steps refer to docs/method.md):

* :func:`check_select_picks` - ``select_picks(features, energies, k, generator)``: Algorithm 1's steps 3-6 (unit-length
  features, k-means, each cluster's lowest- and highest-energy member, a random fill up to ``2k``) must give the
  picks of :func:`gregnb.sampling.energy_cluster_sample` with the same generator, also when a cluster is empty or a
  member has no partner; with tied energies any lowest (highest) member counts;
* :func:`check_gregplus_step` - ``gregplus_step(model, optimizer, x_id, y_id, candidates, m_in, m_out, generator,
  lambda_s, lambda_grad)``: the whole step must train on the same picks, report the same loss and move the weights
  as the package's step does (``gregnb.train.METHODS["greg+"]``, the step :func:`gregnb.train.fit` runs, followed by
  the optimiser step) on fixed seeds.

Each prints a verdict (:mod:`gregnb.homework.verdict`) with a hint for the common mistakes and returns it.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F

from ..losses import greg_objective
from ..sampling import energy_cluster_sample, kmeans
from ..scores import energy
from .verdict import BadResult, Verdict, _as_result, _run

__all__ = ["check_select_picks", "check_gregplus_step", "picks_from_labels", "select_cases", "step_cases"]


def picks_from_labels(labels: torch.Tensor, energies: torch.Tensor, k: int, generator: torch.Generator | None):
    """Steps 5-6 of Algorithm 1 given the cluster labels: each cluster's lowest-energy member, then each cluster's
    highest-energy member (not the same one twice), then a random fill up to ``2k`` from the unpicked candidates in
    increasing order, drawn with ``generator``. Equals :func:`gregnb.sampling.energy_cluster_sample` for the labels
    its k-means gives (``tests/test_homework.py`` checks it). Returns ``(indices, roles)`` (0 hard, 1 detected, 2 fill)."""
    low, high = [], []
    for c in range(k):
        members = (labels == c).nonzero().squeeze(1)
        if len(members) == 0:
            continue
        order = members[torch.sort(energies[members].float(), stable=True).indices]
        low.append(int(order[0]))
        if len(order) > 1:
            high.append(int(order[-1]))
    chosen = low + high
    rest = torch.tensor([i for i in range(len(energies)) if i not in set(chosen)], dtype=torch.long)
    fill = rest[torch.randperm(len(rest), generator=generator)[: 2 * k - len(chosen)]].tolist() if len(chosen) < 2 * k else []
    roles = [0] * len(low) + [1] * len(high) + [2] * len(fill)
    return torch.tensor(chosen + fill, dtype=torch.long), torch.tensor(roles, dtype=torch.long)


def _unit(f: torch.Tensor) -> torch.Tensor:
    f = f.float()
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def select_cases() -> dict[str, tuple]:
    """``{description: (features, energies, k, generator seed, ties)}``: random candidates, duplicated features (empty
    clusters and a fill), one cluster, clusters of one member, and tied energies in separated clusters."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for i, (n, d, k) in enumerate(((96, 8, 16), (60, 4, 10), (150, 16, 25))):
        out[f"random: {n} candidates, {d}-dim features, k={k}"] = (torch.randn(n, d, generator=g),
                                                                    torch.randn(n, generator=g), k, 10 + i, False)
    base = torch.randn(4, 6, generator=g)
    out["40 candidates on 4 distinct feature rows, k=8: empty clusters, picks to fill"] = (
        base[torch.arange(40) % 4], torch.randn(40, generator=g), 8, 1, False)
    out["one cluster (k=1)"] = (torch.randn(9, 3, generator=g), torch.randn(9, generator=g), 1, 2, False)
    far = 10 * torch.eye(6)
    out["6 far-apart candidates and 6 near them, k=5: members without a partner"] = (
        torch.cat([far, far + 0.1 * torch.randn(6, 6, generator=g)]), torch.randn(12, generator=g), 5, 3, False)
    dirs = 10 * torch.eye(5)[torch.arange(30) % 5] + 0.2 * torch.randn(30, 5, generator=g)
    out["30 candidates in 5 separated clusters, k=5, tied energies"] = (
        dirs, torch.randint(0, 3, (30,), generator=g).float(), 5, 4, True)
    return out


def _reference_picks(features, energies, k, seed):
    return energy_cluster_sample(features, energies, n_per_cluster=1, n_clusters=k, two_way=True,
                                 n_select=min(2 * k, len(energies)), generator=torch.Generator().manual_seed(seed))


def check_select_picks(student_select: Callable) -> Verdict:
    """HW6 Q1: ``student_select(features (N, D), energies (N,), k, generator) -> 2k distinct indices``: the picks of
    Algorithm 1 (steps 3-6), as :func:`gregnb.sampling.energy_cluster_sample` makes them with the same generator.
    With tied energies (the last case) any member with its cluster's lowest (highest) energy counts."""
    data = select_cases()

    def canonical(d, idx):
        f, e, k, _, ties = data[d]
        if ties:  # the energies picked per cluster: the same whichever tied member was taken
            labels, _ = kmeans(_unit(f), k, generator=torch.Generator().manual_seed(data[d][3]))
            pairs = sorted((int(labels[i]), float(e[i])) for i in idx.tolist())
            return [float(v) for pair in pairs for v in pair]
        return [float(v) for v in sorted(idx.tolist())]

    def call(d):
        f, e, k, seed, _ = data[d]
        raw = student_select(f.clone(), e.clone(), k, torch.Generator().manual_seed(seed))
        idx, why = _as_result(raw)
        if why:
            raise BadResult(why)
        idx = idx.flatten()
        if (idx != idx.round()).any() or (idx < 0).any() or (idx >= len(e)).any():
            raise BadResult(f"return indices into the candidates (whole numbers from 0 to {len(e) - 1})")
        idx = idx.long()
        if len(set(idx.tolist())) != len(idx):
            raise BadResult("an index appears more than once: a member that is both lowest and highest of its cluster "
                            "is picked once, and the fill takes only candidates not picked yet")
        if len(idx) != 2 * k:
            n_clusters = int(torch.unique(kmeans(_unit(f), k, generator=torch.Generator().manual_seed(seed))[0]).numel())
            hint = (f"you return {len(idx)} picks, expected 2k = {2 * k}: "
                    + ("one per cluster: two-way also takes each cluster's HIGHEST-energy member" if len(idx) == k else
                       f"clusters that are empty or have one member give fewer (here {n_clusters} of the {k} clusters "
                       f"are non-empty): fill up to 2k at random from the candidates not picked yet"))
            raise BadResult(hint)
        return canonical(d, idx)

    cases = [(d, (lambda d=d: call(d)), (lambda d=d: canonical(d, _reference_picks(*data[d][:4]))))
             for d in data]

    def variant(d, kind):
        f, e, k, seed, _ = data[d]
        gen = torch.Generator().manual_seed(seed)
        if kind == "greedy":
            return canonical(d, e.argsort()[: 2 * k])
        feats = f.float() if kind == "raw" else _unit(f)
        labels, _ = kmeans(feats, k, generator=gen)
        return canonical(d, picks_from_labels(labels, e, k, gen)[0])

    def diagnose(outputs, wrong_cases):
        """Right cluster picks, another fill: say how the fill is drawn."""
        for i in wrong_cases:
            d = list(data)[i]
            f, e, k, seed, ties = data[d]
            if ties:
                return None
            _, roles = energy_cluster_sample(f, e, n_clusters=k, n_select=2 * k, return_roles=True,
                                             generator=torch.Generator().manual_seed(seed))
            ref = _reference_picks(f, e, k, seed)
            core = set(ref[roles < 2].tolist())
            if not core <= {int(v) for v in outputs[i].tolist()}:
                return None
        return ("your cluster picks are right but the random fill differs: after k-means, draw it with "
                "torch.randperm(len(rest), generator=generator) over the unpicked candidates in increasing order")

    mistakes = [
        ("these are the lowest energies overall (greedy): pick within each cluster", lambda d: variant(d, "greedy")),
        ("k-means must run on the UNIT-LENGTH features (each row divided by its norm)", lambda d: variant(d, "raw")),
    ]
    return _run("select_picks", cases, mistakes, student_select, diagnose=diagnose)


# ------------------------------------------------------------------ the whole step

def step_cases() -> dict[str, tuple]:
    """``{description: (model, x_id, y_id, candidates, m_in, m_out, seed, lambda_s, lambda_grad)}``: small MLPs on
    2-D inputs (no BatchNorm), 8 ID rows, 48 candidates, margins inside the batch's energies."""
    from ..models import MLP

    out = {}
    for seed, (lam_s, lam_g) in enumerate(((0.1, 1.0), (0.5, 0.3), (0.1, 3.0))):
        torch.manual_seed(100 + seed)
        model = MLP(2, 3, hidden=(16, 16))
        g = torch.Generator().manual_seed(seed)
        x, y = 2 * torch.randn(8, 2, generator=g), torch.randint(0, 3, (8,), generator=g)
        cand = 8 * torch.rand(48, 2, generator=g) - 4
        with torch.no_grad():
            e_id, e_c = energy(model(x)), energy(model(cand))
        m_in, m_out = float(e_id.median()), float(e_c.median())
        m_out = max(m_out, m_in + 0.05)
        out[f"MLP seed {seed}: 8 ID rows, 48 candidates, λ_S={lam_s:g}, λ∇={lam_g:g}"] = (
            model, x, y, cand, m_in, m_out, seed, lam_s, lam_g)
    return out


LR = 0.1  # the plain SGD step the checker gives the student's optimiser: the update is -LR x the gradient


def _garbage_grads(model: torch.nn.Module, seed: int) -> None:
    """Stale gradients from an earlier step: a step that forgets ``zero_grad`` adds them to its own."""
    g = torch.Generator().manual_seed(1000 + seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def _step_outcome(model, before, loss) -> list[float]:
    delta = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]) / LR
    return [float(loss), *delta.tolist()]


def _reference_step(case, picks=None, kind=None) -> tuple[list[float], torch.Tensor]:
    """The package's step on a copy of the case's model: ``METHODS["greg+"]`` (the picks Algorithm 1 makes), or
    :func:`gregnb.losses.greg_objective` on given ``picks``; then zero_grad, backward and one SGD step. ``kind`` makes
    a typical mistake instead (for the hints)."""
    from ..train import METHODS, TrainConfig

    model, x, y, cand, m_in, m_out, seed, lam_s, lam_g = case
    model = copy.deepcopy(model).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    _garbage_grads(model, seed)
    if picks is None:
        cfg = TrainConfig(method="greg+", batch_size=len(x), m_in=m_in, m_out=m_out, lambda_s=lam_s, lambda_grad=lam_g,
                          seed=seed, progress=False)
        loss, logs = METHODS["greg+"].step(model, x, y, cand, cfg, 0)
        picks = logs["picked_index"]
    elif kind is None:
        loss, _ = greg_objective(model, x, y, cand[picks], m_in=m_in, m_out=m_out, lambda_s=lam_s, lambda_grad=lam_g)
    else:
        loss = _mistaken_loss(model, x, y, cand[picks], m_in, m_out, lam_s, lam_g, kind)
    if kind != "no zero_grad":
        opt.zero_grad(set_to_none=True)
    if kind == "detached energy loss":
        loss, value = loss
        loss.backward()
        loss = value
    else:
        loss.backward()
    if kind != "no step":
        opt.step()
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    return _step_outcome(model, before, value), picks


def _mistaken_loss(model, x, y, x_ood, m_in, m_out, lam_s, lam_g, kind):
    n = len(x)
    inputs = torch.cat([x, x_ood]).detach().requires_grad_(True)
    logits = model(inputs)
    e = energy(logits)
    ce = F.cross_entropy(logits[:n], y)
    if kind == "one mean":
        hinge = torch.cat([F.relu(e[:n] - m_in), F.relu(m_out - e[n:])]).pow(2).mean()
    else:
        hinge = F.relu(e[:n] - m_in).pow(2).mean() + F.relu(m_out - e[n:]).pow(2).mean()
    mask = torch.cat([e[:n] <= m_in, e[n:] >= m_out]).to(e.dtype).detach()
    if kind == "unmasked":
        mask = torch.ones_like(mask)
    (g,) = torch.autograd.grad((mask * e).sum(), inputs, create_graph=True)
    norms = g.norm(dim=1) ** (2 if kind == "squared" else 1)
    penalty = norms[:n].mean() + norms[n:].mean()
    if kind == "detached energy loss":  # L_S on energies without a graph: its value counts, its gradient does not
        return ce + lam_g * penalty, (ce + lam_s * hinge.detach() + lam_g * penalty).item()
    return ce + lam_s * hinge + lam_g * penalty


def check_gregplus_step(student_step: Callable, student_select: Callable | None = None) -> Verdict:
    """HW6 Q2: ``student_step(model, optimizer, x_id, y_id, candidates, m_in, m_out, generator, lambda_s,
    lambda_grad) -> (picks, loss)`` must train on Algorithm 1's picks and move the weights as the package's step
    does. The optimiser is plain SGD (so the update is the gradient) and holds stale gradients from an earlier step.
    With ``student_select`` (Q1) given and different from the package's picks, the step is compared with the package's
    loss on the student's own picks, so a mistake in Q1 is not counted again here."""
    data = step_cases()
    refs: dict[str, torch.Tensor] = {}

    def ref_picks(d):
        if d not in refs:
            case = data[d]
            _, picks = _reference_step(case)
            if student_select is not None:  # the student's own selection on the same scores, if it differs
                with torch.no_grad():
                    logits, feats = case[0].eval()(case[3], return_features=True)
                case[0].train()
                try:
                    own, why = _as_result(student_select(feats, energy(logits), len(case[1]),
                                                         torch.Generator().manual_seed(case[6] * 1_000_003)))
                except Exception:
                    own, why = None, "error"
                if why is None and len(own) == len(picks) and set(own.long().tolist()) != set(picks.tolist()):
                    picks = own.long()
            refs[d] = picks
        return refs[d]

    def expected(d):
        outcome, _ = _reference_step(data[d], picks=ref_picks(d))
        return outcome

    def call(d):
        model, x, y, cand, m_in, m_out, seed, lam_s, lam_g = data[d]
        mine = copy.deepcopy(model).train()
        before = [p.detach().clone() for p in mine.parameters()]
        opt = torch.optim.SGD(mine.parameters(), lr=LR)
        _garbage_grads(mine, seed)
        out = student_step(mine, opt, x.clone(), y.clone(), cand.clone(), m_in, m_out,
                           torch.Generator().manual_seed(seed * 1_000_003), lam_s, lam_g)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise BadResult(f"return a pair (picks, loss), not {type(out).__name__}")
        picks, why = _as_result(out[0])
        loss, why_loss = _as_result(out[1].detach() if isinstance(out[1], torch.Tensor) else out[1])
        if why or why_loss or loss.numel() != 1:
            raise BadResult(f"return (picks, loss): the picked indices and the loss as one number ({why or why_loss or 'the loss is not one number'})")
        if sorted(picks.long().tolist()) != sorted(ref_picks(d).tolist()):
            raise BadResult("your step trains on other picks than Algorithm 1 makes: score the candidates with the model "
                            "in eval mode, under torch.no_grad(), and hand the generator to select_picks untouched")
        return _step_outcome(mine, before, float(loss))

    cases = [(d, (lambda d=d: call(d)), (lambda d=d: expected(d))) for d in data]
    mistake = lambda kind: (lambda d: _reference_step(data[d], picks=ref_picks(d), kind=kind)[0])  # noqa: E731
    mistakes = [
        ("the penalty acts on every row: mask it as (E6) does (ID rows with E <= m_in, outlier rows with E >= m_out)",
         mistake("unmasked")),
        ("you squared the gradient norm: (E6) uses the plain L2 norm", mistake("squared")),
        ("(E4) takes two means, one over the ID rows and one over the outlier rows, not one mean over all",
         mistake("one mean")),
        ("the loss is right but the stale gradients stayed in: call optimizer.zero_grad() before backward()",
         mistake("no zero_grad")),
        ("the loss is right but the weights did not move: call optimizer.step() after backward()", mistake("no step")),
        ("the energy loss reaches the weights without a gradient: compute it from the energies of the training "
         "forward pass (not from the candidates' scores, which were computed without a graph)",
         mistake("detached energy loss")),
    ]
    return _run("GReg+ step", cases, mistakes, student_step)
