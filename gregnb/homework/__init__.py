"""Homework: instant-feedback checkers and the tool that writes the student versions.

Checkers (each prints a verdict and returns a :class:`Verdict`):
``check_energy``, ``check_fpr95`` (HW1), ``check_greg_penalty`` (HW2), ``check_sampler`` (HW3),
``check_certified_radius`` (HW4).

Release: ``python -m gregnb.homework release [--out DIR] [--check]`` (see :mod:`gregnb.homework.release`).
"""
from .checkers import (Verdict, check_certified_radius, check_energy, check_fpr95, check_greg_penalty,
                       check_sampler)

__all__ = ["Verdict", "check_energy", "check_fpr95", "check_greg_penalty", "check_sampler", "check_certified_radius"]
