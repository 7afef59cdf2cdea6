"""Choosing which auxiliary outliers a batch sees (GReg+, method.md §3).

Every sampler takes the candidates' penultimate ``features`` ``(N, D)`` and ``energies`` ``(N,)``
(LOW = ID-like, i.e. *hard* outliers) and returns a 1-D LongTensor of indices into the candidates.

* :func:`energy_cluster_sample` - Algorithm 1: normalise features, k-means, take each cluster's
  lowest-energy member(s) and, two-way, its highest-energy member(s).
* :func:`random_sample`, :func:`greedy_sample` (the lowest energies overall, NTOM/POEM-style hard
  mining), :func:`dos_sample` (clusters + lowest energy, one way, inside an energy window).
* :func:`kmeans` - k-means with k-means++ seeding in torch, on the tensors' device; the ``n_init``
  restarts run together as one batched computation.
"""
from __future__ import annotations

import torch

__all__ = ["kmeans", "energy_cluster_sample", "random_sample", "greedy_sample", "dos_sample", "SAMPLERS",
           "get_sampler"]


def _check(features: torch.Tensor, energies: torch.Tensor) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {tuple(features.shape)}")
    if energies.ndim != 1 or len(energies) != len(features):
        raise ValueError(f"energies must have shape (N,) with N = len(features) = {len(features)}, "
                         f"got {tuple(energies.shape)}")
    if len(features) == 0:
        raise ValueError("no candidates: features is empty")
    if not torch.isfinite(features).all() or not torch.isfinite(energies).all():
        raise ValueError("features or energies contain NaN/inf; check the model's outputs on the candidates")


def _kmeanspp(x: torch.Tensor, k: int, n_init: int, gen: torch.Generator | None) -> torch.Tensor:
    """k-means++ seeding for ``n_init`` restarts at once: returns centres ``(n_init, k, D)``."""
    n = len(x)
    sq = (x * x).sum(1)
    first = torch.randint(n, (n_init,), generator=gen).to(x.device)
    centres = [x[first]]  # list of (n_init, D)
    d2 = (sq[None, :] - 2 * centres[0] @ x.T + sq[first][:, None]).clamp_min(0)  # (n_init, n)
    for _ in range(1, k):
        probs = d2 / d2.sum(1, keepdim=True).clamp_min(1e-30)
        # inverse-CDF sampling on the CPU generator for reproducibility across devices
        u = torch.rand(n_init, 1, generator=gen).to(x.device, x.dtype)
        idx = torch.searchsorted(probs.cumsum(1), u).clamp_max(n - 1).squeeze(1)
        c = x[idx]
        centres.append(c)
        d2 = torch.minimum(d2, (sq[None, :] - 2 * c @ x.T + sq[idx][:, None]).clamp_min(0))
    return torch.stack(centres, dim=1)


def kmeans(x: torch.Tensor, k: int, *, n_init: int = 3, max_iter: int = 50, tol: float = 1e-4,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding, the best of ``n_init`` restarts by inertia.

    Args:
        x: ``(N, D)`` points (any float dtype, any device; the work stays on that device).
        k: number of clusters, ``1 <= k <= N``.
        tol: stop when no centre moves more than ``tol`` times the data's mean variance.
        generator: a CPU ``torch.Generator`` for reproducible seeding.

    Returns:
        ``(labels, centres)``: ``(N,)`` int64 cluster of each point and ``(k, D)`` centres.
        An empty cluster is re-seeded at the point farthest from its centre, so all k are used.
    """
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty (N, D) tensor, got shape {tuple(x.shape)}")
    if not isinstance(k, int) or not 1 <= k <= len(x):
        raise ValueError(f"k must be an integer in [1, N] = [1, {len(x)}], got {k!r}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN/inf")
    x = x.float() if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16) else x
    n = len(x)
    sq = (x * x).sum(1)
    centres = _kmeanspp(x, k, n_init, generator)  # (R, k, D)
    threshold = tol * x.var(0).mean().clamp_min(1e-12)
    flat_offset = (torch.arange(n_init, device=x.device) * k)[:, None]  # restart r's clusters live at r*k..
    ones = torch.ones(n_init * n, device=x.device, dtype=x.dtype)
    for _ in range(max_iter):
        # squared distances to every centre, (R, N, k): ||x||^2 - 2 x.c + ||c||^2 (the ||x||^2 term does not
        # change the argmin, so it is left out here)
        d2 = torch.baddbmm((centres * centres).sum(2)[:, None, :], x.expand(n_init, n, -1), centres.transpose(1, 2),
                           alpha=-2.0)
        labels = d2.argmin(2)  # (R, N)
        flat = (labels + flat_offset).reshape(-1)
        sums = torch.zeros(n_init * k, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, flat, x.repeat(n_init, 1))
        counts = torch.zeros(n_init * k, device=x.device, dtype=x.dtype).index_add_(0, flat, ones).view(n_init, k)
        new = sums.view(n_init, k, -1) / counts.clamp_min(1)[:, :, None]
        empty = counts == 0
        if empty.any():  # move each empty centre to the point farthest from its own centre
            far = d2.gather(2, labels[:, :, None]).squeeze(2) + sq[None, :]  # (R, N)
            for r, j in empty.nonzero().tolist():
                i = int(far[r].argmax())
                new[r, j] = x[i]
                far[r, i] = -1.0
        shift = ((new - centres) ** 2).sum(2).max()
        centres = new
        if shift <= threshold:
            break
    d2 = sq[None, :, None] - 2 * x[None] @ centres.transpose(1, 2) + (centres * centres).sum(2)[:, None, :]
    labels = d2.argmin(2)
    inertia = d2.gather(2, labels[:, :, None]).squeeze(2).clamp_min(0).sum(1)
    best = int(inertia.argmin())
    return labels[best], centres[best]


def _window(energies: torch.Tensor, window: tuple[int, int] | None) -> torch.Tensor:
    """Indices of the candidates kept: all, or positions [start, end) of the energy-ascending order."""
    if window is None:
        return torch.arange(len(energies), device=energies.device)
    start, end = window
    order = energies.argsort()
    if not 0 <= start < end or start >= len(energies):
        raise ValueError(f"window must be (start, end) with 0 <= start < end and start < N = {len(energies)}, "
                         f"got {window}")
    return order[start:end]


def _fill(chosen: list[int], n_total: int, n_select: int, gen: torch.Generator | None) -> list[int]:
    if len(chosen) >= n_select:
        return chosen[:n_select]
    taken = set(chosen)
    rest = torch.tensor([i for i in range(n_total) if i not in taken], dtype=torch.long)
    extra = rest[torch.randperm(len(rest), generator=gen)[: n_select - len(chosen)]].tolist()
    return chosen + extra


def energy_cluster_sample(features: torch.Tensor, energies: torch.Tensor, n_per_cluster: int = 1,
                          n_clusters: int | None = None, two_way: bool = True,
                          window: tuple[int, int] | None = None, n_select: int | None = None,
                          generator: torch.Generator | None = None, n_init: int = 3) -> torch.Tensor:
    """GReg+'s energy-based sampling (Algorithm 1).

    1. keep the candidates inside ``window`` (positions [start, end) in order of increasing energy;
       None keeps all, as GReg+ does);
    2. normalise each feature row to unit L2 norm; k-means into ``n_clusters`` clusters
       (default: N // 6, i.e. the ID batch when the candidates are 6x the batch, as in the paper);
    3. from each cluster take its ``n_per_cluster`` lowest-energy members (hard outliers, for the
       energy loss) and, if ``two_way``, its ``n_per_cluster`` highest-energy members (already
       detected, for the gradient term);
    4. if clusters are too small to fill ``n_select`` (default ``n_clusters * n_per_cluster`` per way),
       fill at random from the remaining kept candidates.

    Returns a LongTensor of distinct indices into the candidates: the low-energy picks first.
    Deterministic given ``generator``.
    """
    _check(features, energies)
    keep = _window(energies, window)
    n = len(keep)
    if n_clusters is None:
        n_clusters = max(1, n // 6)
    if not isinstance(n_clusters, int) or not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, number of kept candidates = {n}], got {n_clusters!r}")
    if not isinstance(n_per_cluster, int) or n_per_cluster < 1:
        raise ValueError(f"n_per_cluster must be a positive integer, got {n_per_cluster!r}")
    ways = 2 if two_way else 1
    if n_select is None:
        n_select = n_clusters * n_per_cluster * ways
    if not 1 <= n_select <= n:
        raise ValueError(f"n_select must be in [1, {n}] (the kept candidates), got {n_select}")
    f = features[keep].float()
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
    labels, _ = kmeans(f, n_clusters, n_init=n_init, generator=generator)
    e = energies[keep].float()
    # sort once by (cluster, energy): each cluster is then a contiguous run in increasing energy
    order = e.argsort()
    order = order[torch.argsort(labels[order], stable=True)]
    counts = torch.bincount(labels, minlength=n_clusters).tolist()
    low, high, start = [], [], 0
    order = order.tolist()
    for c in counts:
        members = order[start:start + c]
        start += c
        take = min(n_per_cluster, len(members))
        low += members[:take]
        if two_way:
            high += members[max(take, len(members) - n_per_cluster):][::-1]
    chosen = _fill(low + high, n, n_select, generator)
    return keep[torch.tensor(chosen, dtype=torch.long, device=keep.device)]


def random_sample(features: torch.Tensor, energies: torch.Tensor, n_select: int,
                  generator: torch.Generator | None = None, **_) -> torch.Tensor:
    """``n_select`` candidates uniformly at random, without replacement (the plain energy-loss recipe)."""
    _check(features, energies)
    if not 1 <= n_select <= len(energies):
        raise ValueError(f"n_select must be in [1, {len(energies)}], got {n_select}")
    return torch.randperm(len(energies), generator=generator)[:n_select].to(energies.device)


def greedy_sample(features: torch.Tensor, energies: torch.Tensor, n_select: int, **_) -> torch.Tensor:
    """The ``n_select`` lowest-energy (most ID-like) candidates: hard-outlier mining without diversity."""
    _check(features, energies)
    if not 1 <= n_select <= len(energies):
        raise ValueError(f"n_select must be in [1, {len(energies)}], got {n_select}")
    return energies.argsort()[:n_select]


def dos_sample(features: torch.Tensor, energies: torch.Tensor, n_select: int, n_clusters: int | None = None,
               window: tuple[int, int] | None = (16, 400), generator: torch.Generator | None = None,
               **_) -> torch.Tensor:
    """DOS-like: drop the most ID-like candidates (an energy window, default [16, 400) as in the
    authors' baseline), cluster, take each cluster's lowest-energy member(s), one way."""
    _check(features, energies)
    if window is not None and window[0] >= len(energies):
        window = None  # too few candidates for the window: keep all
    n_kept = len(_window(energies, window))
    n_clusters = n_clusters or min(n_select, n_kept)
    return energy_cluster_sample(features, energies, n_per_cluster=max(1, n_select // n_clusters),
                                 n_clusters=n_clusters, two_way=False, window=window,
                                 n_select=min(n_select, n_kept), generator=generator)


SAMPLERS = {"energy_cluster": energy_cluster_sample, "random": random_sample, "greedy": greedy_sample,
            "dos": dos_sample}


def get_sampler(name: str):
    """A sampler by name: "energy_cluster" (GReg+), "random", "greedy", "dos"."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None
