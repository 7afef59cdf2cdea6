"""A near-exact *sound* radius for 2-D inputs: cover the disk with square cells and certify each.

For a point ``x0`` decided ID (``E(x0) <= threshold``; OOD mirrors it) the true robust radius is the
distance from ``x0`` to the nearest point whose decision differs. Cover the square
``[x0 - eps_max, x0 + eps_max]^2`` with cells; for each cell compute *sound* energy bounds over the
cell (CROWN on the box: the per-cell correction, nearly exact on a small cell) and

* drop it if the bounds prove the decision on the whole cell, with the safety margin ``tol`` of
  :mod:`gregnb.certify.rounding` over that cell (``upper <= threshold - tol`` for ID, ``lower > threshold +
  tol`` for OOD: then the model's own float32 energy keeps the decision too);
* record its distance to ``x0`` (the distance of the cell's nearest point) if the whole cell lies within
  ``tol`` of the threshold or beyond it (``lower > threshold - tol`` for ID: recording a cell only ever
  shrinks the radius), or if it is undecided and already as small as ``cell``;
* otherwise split it in four and repeat; cells farther than the best recorded distance are dropped.

The radius is the smallest recorded distance (``eps_max`` if none; 0 for a point within ``tol`` of the
threshold, or whose float32 and exact decisions disagree). Every point closer than it lies
in a cell whose decision was proven, so the decision holds on the open ball of that radius (sound);
and the cell where the decision really flips is recorded, so the radius is within about one cell
diagonal (``sqrt(2) * cell``) of the true radius wherever the per-cell bounds are tight.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .bounds import _energy_chunk, _inputs
from .graph import _DTYPE, build_graph
from .propagate import InputSet
from .rounding import _U64, decisions, margin_on, unit_roundoff

__all__ = ["grid_radius"]


def grid_radius(model: nn.Module, x: torch.Tensor, threshold: float, *, eps_max: float, cell: float | None = None,
                temperature: float = 1.0, method: str = "crown", start: int = 8, max_cells: int = 2_000_000,
                batch_size: int = 4096, rounding: str = "worst-case", _ops=None) -> torch.Tensor:
    """Sound, near-exact radius of each 2-D point's decision (see the module docstring).

    Args:
        x: ``(N, 2)`` points; threshold: the energy threshold (ID when ``E <= threshold``).
        eps_max: the largest radius looked at (input units); cell: the finest cell's side (default
            ``eps_max / 200``); method: the per-cell bound, "crown" or "ibp"; start: cells per side
            of the first, coarse grid; max_cells: a guard against runaway refinement (ValueError).
    Returns ``(N,)`` float64 radii (the model's own float32 decisions are certified, with the safety margin
    of :func:`gregnb.certify.rounding.safety_margin` over each cell; see
    :func:`gregnb.certify.sound_radius` for ``is_id``).
    """
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"the grid certifier needs 2-D inputs of shape (N, 2), got {tuple(x.shape)}")
    if not (isinstance(eps_max, (int, float)) and 0 < eps_max < math.inf):
        raise ValueError(f"eps_max must be a positive finite number, got {eps_max!r}")
    cell = eps_max / 200 if cell is None else float(cell)
    if not 0 < cell <= eps_max:
        raise ValueError(f"cell must be in (0, eps_max], got {cell!r}")
    if method not in ("crown", "ibp"):
        raise ValueError(f"method must be 'crown' or 'ibp', got {method!r}")
    x64, _ = _inputs(model, x, 0.0, "l2")
    was = model.training
    model.eval()
    try:
        ops = _ops if _ops is not None else build_graph(model, (2,))
        decide_id, _, safe = decisions(model, x, threshold, 0.0, temperature, ops, rounding=rounding)
        u = unit_roundoff(model) + _U64
        best = torch.where(safe, float(eps_max), 0.0).to(_DTYPE)
        half = eps_max / start
        offs = -eps_max + half * (2 * torch.arange(start, dtype=_DTYPE) + 1)
        grid = torch.stack(torch.meshgrid(offs, offs, indexing="ij"), -1).reshape(-1, 2)
        owner = torch.arange(len(x)).repeat_interleave(len(grid))
        centre = x64[owner] + grid.repeat(len(x), 1)
        while len(owner):
            near = ((centre - x64[owner]).abs() - half).clamp_min(0).norm(dim=1)
            keep = near < best[owner]
            owner, centre, near = owner[keep], centre[keep], near[keep]
            if not len(owner):
                break
            if len(owner) > max_cells:
                raise ValueError(f"more than {max_cells} cells: use a larger cell or a smaller eps_max")
            lo, hi, tl = [], [], []
            for i in range(0, len(owner), batch_size):
                c = centre[i:i + batch_size]
                inp = InputSet(c, torch.full((len(c),), half, dtype=_DTYPE), "linf")
                a, b = _energy_chunk(ops, inp, method, temperature, "symbolic")
                lo.append(a), hi.append(b), tl.append(margin_on(ops, inp, threshold, temperature, u, rounding))
            lo, hi, tl = torch.cat(lo), torch.cat(hi), torch.cat(tl)
            is_id = decide_id[owner]
            ok = torch.where(is_id, hi <= threshold - tl, lo > threshold + tl)
            hopeless = torch.where(is_id, lo > threshold - tl, hi <= threshold + tl)
            final = hopeless | (~ok & (2 * half <= cell))
            best = best.scatter_reduce(0, owner[final], near[final], "amin")
            split = ~ok & ~final
            owner, centre = owner[split], centre[split]
            half /= 2
            quad = torch.tensor([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=_DTYPE) * half
            owner = owner.repeat_interleave(4)
            centre = centre.repeat_interleave(4, 0) + quad.repeat(len(centre), 1)
    finally:
        model.train(was)
    return best
