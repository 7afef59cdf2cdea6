"""Homework: instant-feedback checkers, the tool that writes the student versions, and a grader.

Checkers (each prints a verdict and returns a :class:`Verdict`):
``check_energy``, ``check_fpr95`` (HW1), ``check_greg_penalty`` (HW2), ``check_sampler``,
``check_pick_means`` (HW3), ``check_certified_radius`` (HW4).

Command line (``python -m gregnb.homework --help``):

* ``release [--out DIR] [--check]`` writes the student versions (see :mod:`gregnb.homework.release`);
* ``grade SUBMISSIONS...`` runs the hidden tests on submitted notebooks and prints the points, the
  way nbgrader's autograder scores them (see :mod:`gregnb.homework.grade`).
"""
from .checkers import (Verdict, check_certified_radius, check_energy, check_fpr95, check_greg_penalty,
                       check_pick_means, check_sampler)

__all__ = ["Verdict", "check_energy", "check_fpr95", "check_greg_penalty", "check_sampler", "check_pick_means",
           "check_certified_radius"]
