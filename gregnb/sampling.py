"""Choosing which auxiliary outliers a batch sees (GReg+: Algorithm 1 of Sharifi et al., ECCV 2024,
energy-based sampling; its steps and the authors' code's details are written out in docs/method.md).

Every sampler takes the candidates' penultimate ``features`` ``(N, D)`` and ``energies`` ``(N,)``
(LOW = ID-like, i.e. *hard* outliers) and returns a 1-D LongTensor of indices into the candidates.

* :func:`energy_cluster_sample` - Algorithm 1: normalise features, k-means, take each cluster's
  lowest-energy member(s) and, two-way, its highest-energy member(s).
* :func:`random_sample`, :func:`greedy_sample` (the lowest energies overall: hard-outlier mining with
  no regard for diversity), :func:`dos_sample` (clusters + lowest energy, one way, inside an energy window).
* :func:`plan_selection` - the one place that turns (sampler, ID batch size, two-way, k, window, candidate
  factor, picks) into a validated :class:`SelectionPlan`; training, the chapters' figures and the explorer
  all select through it, so they share one regime.
* :func:`kmeans` - k-means with k-means++ seeding in torch, on the tensors' device; the ``n_init``
  restarts run together as one batched computation.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from .validate import describe, flag, number, scalar, whole

__all__ = ["kmeans", "energy_cluster_sample", "random_sample", "greedy_sample", "dos_sample", "SAMPLERS",
           "get_sampler", "SelectionPlan", "plan_selection", "DOS_DROP_FRACTION", "ROLES", "CANDIDATE_FACTOR"]

#: What each pick of :func:`energy_cluster_sample` is, with ``return_roles=True``: 0 = a cluster's lowest
#: energy (hard), 1 = a cluster's highest energy (already detected, two-way), 2 = a random fill.
ROLES = ("hard", "detected", "fill")
#: GReg+'s candidates per ID sample: a step scores ``CANDIDATE_FACTOR`` x the ID batch B (6 in the paper), and by
#: default clusters them into k = B clusters (:func:`_default_clusters`)
CANDIDATE_FACTOR = 6


def _check(features: torch.Tensor, energies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidates as tensors (NumPy arrays or lists converted), checked."""
    features, energies = _tensor("features", features), _tensor("energies", energies)
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {tuple(features.shape)}")
    if energies.ndim != 1 or len(energies) != len(features):
        raise ValueError(f"energies must have shape (N,) with N = len(features) = {len(features)}, "
                         f"got {tuple(energies.shape)}")
    if len(features) == 0:
        raise ValueError("no candidates: features is empty")
    if not torch.isfinite(features).all() or not torch.isfinite(energies).all():
        raise ValueError("features or energies contain NaN/inf; check the model's outputs on the candidates")
    return features, energies


def _tensor(name: str, x) -> torch.Tensor:
    """``x`` as a tensor (a NumPy array or a list of numbers converted as ``torch.as_tensor`` does)."""
    if isinstance(x, torch.Tensor) and x.device.type == "meta":
        raise ValueError(f"{name} is on the meta device (shapes only, no values); pass a tensor that holds values")
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a tensor (or an array of numbers), got {type(x).__name__}") from None


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
    x = _tensor("x", x)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty (N, D) tensor, got shape {tuple(x.shape)}")
    k = _check_count("k", k, 1, len(x), "the number of points N")
    n_init, max_iter = whole("n_init", n_init), whole("max_iter", max_iter)
    tol = number("tol", tol, low=0.0)
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


def _pair(name: str, value) -> tuple[int, int]:
    """``value`` as two whole numbers ``(start, end)``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be (start, end), two whole numbers, got {describe(value)}")
    return whole(f"{name}'s start", value[0], 0), whole(f"{name}'s end", value[1], 0)


def _window(energies: torch.Tensor, window: tuple[int, int] | None) -> torch.Tensor:
    """Indices of the candidates kept: all, or positions [start, end) of the energy-ascending order."""
    if window is None:
        return torch.arange(len(energies), device=energies.device)
    start, end = _pair("window", window)
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
                          generator: torch.Generator | None = None, n_init: int = 3,
                          return_roles: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """GReg+'s energy-based sampling (Algorithm 1).

    1. keep the candidates inside ``window`` (positions [start, end) in order of increasing energy;
       None keeps all, as GReg+ does);
    2. normalise each feature row to unit L2 norm; k-means into ``n_clusters`` clusters
       (default: the ID batch B = N // :data:`CANDIDATE_FACTOR`, as in the paper; at most the kept candidates);
    3. from each cluster take its ``n_per_cluster`` lowest-energy members (hard outliers, for the
       energy loss) and, if ``two_way``, its ``n_per_cluster`` highest-energy members (already
       detected, for the gradient term);
    4. if clusters are too small to fill ``n_select`` (default ``n_clusters * n_per_cluster`` per way),
       fill at random from the remaining kept candidates.

    Returns a LongTensor of distinct indices into the candidates: the low-energy picks first, then the
    high-energy ones, then the fill. With ``return_roles``, also a LongTensor of the same length: the
    role of each pick as an index into :data:`ROLES`. Deterministic given ``generator``.
    """
    features, energies, two_way = *_check(features, energies), flag("two_way", two_way)
    keep = _window(energies, window)
    n = len(keep)
    if n_clusters is None:
        n_clusters = _default_clusters(max(1, len(energies) // CANDIDATE_FACTOR), n)
    n_clusters = _check_count("n_clusters", n_clusters, 1, n, "the number of kept candidates")
    n_per_cluster = _check_count("n_per_cluster", n_per_cluster, 1, n, "the number of kept candidates")
    ways = 2 if two_way else 1
    if n_select is None:
        n_select = min(n, n_clusters * n_per_cluster * ways)
    n_select = _check_count("n_select", n_select, 1, n, "the number of kept candidates")
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
    idx = keep[torch.tensor(chosen, dtype=torch.long, device=keep.device)]
    if not return_roles:
        return idx
    roles = torch.tensor([0] * len(low) + [1] * len(high) + [2] * max(0, n_select - len(low) - len(high)),
                         dtype=torch.long)[:n_select]
    return idx, roles


def random_sample(features: torch.Tensor, energies: torch.Tensor, n_select: int,
                  generator: torch.Generator | None = None, **_) -> torch.Tensor:
    """``n_select`` candidates uniformly at random, without replacement (the plain energy-loss recipe)."""
    features, energies = _check(features, energies)
    n_select = _check_count("n_select", n_select, 1, len(energies), "the number of candidates")
    return torch.randperm(len(energies), generator=generator)[:n_select].to(energies.device)


def greedy_sample(features: torch.Tensor, energies: torch.Tensor, n_select: int, **_) -> torch.Tensor:
    """The ``n_select`` lowest-energy (most ID-like) candidates: hard-outlier mining without diversity."""
    features, energies = _check(features, energies)
    n_select = _check_count("n_select", n_select, 1, len(energies), "the number of candidates")
    return energies.argsort()[:n_select]


def dos_sample(features: torch.Tensor, energies: torch.Tensor, n_select: int, n_clusters: int | None = None,
               window: tuple[int, int] | None | str = "auto", generator: torch.Generator | None = None,
               **_) -> torch.Tensor:
    """DOS-like: drop the most ID-like candidates (an energy window), cluster, take each cluster's
    lowest-energy member(s), one way. ``window="auto"`` drops the lowest-energy
    :data:`DOS_DROP_FRACTION` of the candidates (16 of 384 in the authors' baseline, whose window is
    [16, 400)), so the rule also works for small candidate batches. ``n_clusters`` defaults to
    ``n_select`` (one pick per cluster)."""
    features, energies = _check(features, energies)
    if window == "auto":
        window = _dos_window(len(energies))
    n_kept = len(_window(energies, window))
    _check_count("n_select", n_select, 1, n_kept, "the candidates kept by the window")
    n_clusters = n_select if n_clusters is None else n_clusters
    _check_count("n_clusters", n_clusters, 1, n_kept, "the candidates kept by the window")
    return energy_cluster_sample(features, energies, n_per_cluster=max(1, n_select // n_clusters),
                                 n_clusters=n_clusters, two_way=False, window=window, n_select=n_select,
                                 generator=generator)


#: DOS's default window drops this share of the most ID-like candidates (16 of 384 in the authors' code).
DOS_DROP_FRACTION = 16 / 384


def _dos_window(n_candidates: int) -> tuple[int, int]:
    return (int(round(DOS_DROP_FRACTION * n_candidates)), n_candidates)


def _default_clusters(batch_size: int, n_kept: int) -> int:
    """k when none is given (energy-cluster sampling): the ID batch B, as in the paper, at most the kept candidates."""
    return min(batch_size, n_kept)


def _check_count(name: str, value, low: int, high: int, what: str) -> int:
    """``value`` must be an integer (Python or NumPy, or a 0-d integer tensor) in [low, high]; returns it as an int."""
    value = scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r} of type {type(value).__name__}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}] ({what}), got {int(value)}")
    return int(value)


SAMPLERS = {"energy_cluster": energy_cluster_sample, "random": random_sample, "greedy": greedy_sample,
            "dos": dos_sample}


def get_sampler(name: str):
    """A sampler by name: "energy_cluster" (GReg+), "random", "greedy", "dos"."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None


@dataclass(frozen=True)
class SelectionPlan:
    """A validated GReg+ selection: how many candidates a step scores and how many it keeps.

    Build one with :func:`plan_selection`; call :meth:`select` with the candidates' features and energies.
    ``n_picks < n_candidates`` always (the OOD batch is a strict subset of what was scored).
    """

    sampler: str
    batch_size: int
    n_candidates: int
    n_picks: int
    two_way: bool
    n_clusters: int | None
    n_per_cluster: int
    window: tuple[int, int] | None

    @property
    def n_kept(self) -> int:
        """Candidates that survive the window."""
        return self.n_candidates if self.window is None else min(self.window[1], self.n_candidates) - self.window[0]

    def select(self, features: torch.Tensor, energies: torch.Tensor, generator: torch.Generator | None = None,
               return_roles: bool = False):
        """Indices of the picks among ``n_candidates`` candidates (features ``(N, D)``, energies ``(N,)``).
        With ``return_roles`` (energy-cluster sampler only) also each pick's role (see :data:`ROLES`)."""
        if len(energies) != self.n_candidates:
            raise ValueError(f"this plan scores {self.n_candidates} candidates, got {len(energies)}")
        if self.sampler == "energy_cluster":
            return energy_cluster_sample(features, energies, n_per_cluster=self.n_per_cluster,
                                         n_clusters=self.n_clusters, two_way=self.two_way, window=self.window,
                                         n_select=self.n_picks, generator=generator, return_roles=return_roles)
        if return_roles:
            raise ValueError("return_roles is only defined for the energy_cluster sampler")
        if self.sampler == "dos":
            return dos_sample(features, energies, self.n_picks, n_clusters=self.n_clusters, window=self.window,
                              generator=generator)
        return SAMPLERS[self.sampler](features, energies, n_select=self.n_picks, generator=generator)


def plan_selection(sampler: str = "energy_cluster", batch_size: int = 64, *, two_way: bool = True,
                   n_clusters: int | None = None, window: tuple[int, int] | None = None,
                   candidate_factor: int = CANDIDATE_FACTOR, n_picks: int | None = None,
                   n_candidates: int | None = None) -> SelectionPlan:
    """The one rule for GReg+'s candidate batch and OOD batch, with the authors' defaults.

    Args:
        sampler: "energy_cluster" (GReg+), "random", "greedy" or "dos".
        batch_size: the ID batch size B of the training step.
        two_way: energy_cluster only: also take each cluster's highest-energy member.
        n_clusters: k; default B for energy_cluster (the paper), ``n_picks`` for dos (one pick per cluster).
        window: ``(start, end)`` positions in energy-ascending order of the candidates kept; default: all
            for energy_cluster (GReg+), the lowest :data:`DOS_DROP_FRACTION` dropped for dos.
        candidate_factor: candidates scored per step = ``candidate_factor * B`` (6 in the paper).
        n_picks: the OOD batch trained on; default 2B two-way, B one-way (as in the authors' code).
        n_candidates: overrides ``candidate_factor * B`` (e.g. a fixed candidate batch in a figure).

    Raises ``ValueError`` unless ``n_picks < n_candidates`` (a strict subset), ``n_picks`` and k fit in
    the candidates the window keeps, and the per-cluster quota fills the picks.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    two_way = flag("two_way", two_way)
    batch_size = _check_count("batch_size", batch_size, 1, 10 ** 9, "the ID batch size")
    candidate_factor = _check_count("candidate_factor", candidate_factor, 1, 10 ** 6, "candidates per ID sample")
    n_cand = candidate_factor * batch_size if n_candidates is None else \
        _check_count("n_candidates", n_candidates, 2, 10 ** 9, "candidates scored per step")
    cluster = sampler == "energy_cluster"
    ways = 2 if (cluster and two_way) else 1
    if n_picks is None:
        n_picks = ways * batch_size
    n_picks = _check_count("n_picks", n_picks, 1, n_cand - 1,
                           f"a strict subset of the {n_cand} candidates; raise candidate_factor or lower the picks")
    if window is None and sampler == "dos":
        window = _dos_window(n_cand)
    if window is not None:
        start, end = _pair("window", window)
        if not 0 <= start < end or start >= n_cand:
            raise ValueError(f"window must be (start, end) with 0 <= start < end and start < {n_cand} candidates, "
                             f"got {tuple(window)}")
        window = (start, end)
    plan = dict(sampler=sampler, batch_size=batch_size, n_candidates=n_cand, n_picks=n_picks,
                two_way=cluster and two_way, n_clusters=None, n_per_cluster=1, window=window)
    kept = SelectionPlan(**plan).n_kept
    if n_picks > kept:
        raise ValueError(f"{n_picks} picks do not fit in the {kept} candidates the window {window} keeps")
    if cluster:
        k = _default_clusters(batch_size, kept) if n_clusters is None else n_clusters
        k = _check_count("n_clusters", k, 1, kept, "the candidates the window keeps")
        per = max(1, n_picks // (ways * k))
        plan.update(n_clusters=k, n_per_cluster=per)
    elif sampler == "dos":
        k = min(n_picks, kept) if n_clusters is None else n_clusters
        plan.update(n_clusters=_check_count("n_clusters", k, 1, kept, "the candidates the window keeps"))
    elif n_clusters is not None or window is not None:
        raise ValueError(f"sampler {sampler!r} uses no clusters and no window; leave n_clusters and window unset")
    return SelectionPlan(**plan)
