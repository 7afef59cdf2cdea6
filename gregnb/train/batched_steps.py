"""What M stacked members of one group share, and what each keeps (see :mod:`gregnb.train.batched`).

The steps themselves are :mod:`gregnb.train.methods`' (the ones :func:`gregnb.train.fit` runs), reading their settings
from a :class:`MemberSettings` in place of a :class:`~gregnb.train.TrainConfig`. No field is listed by hand twice: a
field named in :data:`PER_MEMBER` may differ between the members of a group, and every other field is part of the
group key (:func:`group_key`), so members that differ in it never share a step.
"""
from __future__ import annotations

from dataclasses import fields

import torch

from .config import TrainConfig
from .registry import METHODS

__all__ = ["MemberSettings", "PER_MEMBER", "NOT_STACKED", "group_key"]

#: the fields whose value may differ between the members of a stacked group, each honoured per member: why
PER_MEMBER = {
    "seed": "each member draws its data order, outliers and picks from its own generator",
    "m_in": "the losses take one margin per member (an (M,) tensor)",
    "m_out": "the losses take one margin per member (an (M,) tensor)",
    "lambda_s": "the losses take one weight per member (an (M,) tensor)",
    "lambda_oe": "the losses take one weight per member (an (M,) tensor)",
    "lambda_grad": "the losses take one weight per member; the key keeps members with and without the term apart",
}
#: the fields fit_many deliberately does not honour per member: why
NOT_STACKED = {"progress": "fit_many shows one progress bar over all members (each member's setting is ignored)"}


def _hashable(v):
    return tuple(sorted((k, repr(x)) for k, x in v.items())) if isinstance(v, dict) else v


def group_key(cfg: TrainConfig) -> tuple:
    """What members must share to train as one stacked group: every :class:`TrainConfig` field but those of
    :data:`PER_MEMBER` and :data:`NOT_STACKED` (method, convention, penalty mode, lazy interval, batch sizes,
    sampler, optimiser, schedule, temperature, ...), and whether the step builds the gradient term."""
    shared = tuple((f.name, _hashable(getattr(cfg, f.name))) for f in fields(TrainConfig)
                   if f.name not in PER_MEMBER and f.name not in NOT_STACKED)
    return shared + (("input_gradient", METHODS[cfg.method].uses_input_gradient(cfg)),)


class MemberSettings:
    """A stacked group's settings, read by the step functions as they read a :class:`TrainConfig`: a field of
    :data:`PER_MEMBER` gives one value per member (``seed`` a tuple of ints, the others ``(M,)`` float64 tensors on
    the device, cast to the loss's dtype where used), any other field (and ``plan_selection``, ``aux_per_step``)
    the group's shared value."""

    def __init__(self, cfgs: list[TrainConfig], dev: torch.device):
        if len({group_key(c) for c in cfgs}) != 1:
            raise ValueError("members of one stacked group must share every setting but "
                             f"{sorted(PER_MEMBER)}; group them with gregnb.train.batched.group_members")
        self.cfgs = cfgs
        self.seed = tuple(c.seed for c in cfgs)
        for name in PER_MEMBER.keys() - {"seed"}:
            values = [getattr(c, name) for c in cfgs]
            setattr(self, name, None if None in values else torch.tensor(values, dtype=torch.float64, device=dev))

    def __getattr__(self, name: str):  # a shared field, or a TrainConfig method (reached only for names not set above)
        return getattr(self.__dict__["cfgs"][0], name)
