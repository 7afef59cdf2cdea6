"""Homework: instant-feedback checkers, the study and step helpers, the tool that writes the student versions, the
nbgrader course set-up, and a grader.

Checkers (each prints a verdict and returns a :class:`Verdict`; ``verdict.why()`` is the one-line reason):
``check_energy``, ``check_fpr95`` (HW1), ``check_greg_penalty`` (HW2), ``check_sampler``, ``check_pick_means`` (HW3),
``check_certified_radius`` (HW4), ``check_selection_rule``, ``check_paired_summary`` (HW5; its study in
:mod:`gregnb.homework.study`), ``check_select_picks``, ``check_gregplus_step`` (HW6).

Command line (``python -m gregnb.homework --help``):

* ``release [--out DIR] [--check]`` writes the student versions (see :mod:`gregnb.homework.release`);
* ``course DIR`` sets up (or refreshes) a nbgrader course folder with the six assignments (see
  :mod:`gregnb.homework.course`);
* ``grade SUBMISSIONS...`` runs the hidden tests on submitted notebooks and prints the points, the
  way nbgrader's autograder scores them (see :mod:`gregnb.homework.grade`).
"""
from .checkers import (Verdict, check_certified_radius, check_energy, check_fpr95, check_greg_penalty,
                       check_pick_means, check_sampler)
from .gregplus import check_gregplus_step, check_select_picks
from .judgement import check_paired_summary, check_selection_rule

__all__ = ["Verdict", "check_energy", "check_fpr95", "check_greg_penalty", "check_sampler", "check_pick_means",
           "check_certified_radius", "check_selection_rule", "check_paired_summary", "check_select_picks",
           "check_gregplus_step"]
