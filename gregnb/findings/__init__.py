"""Findings that cannot drift: each chapter records its claims, verdicts and numbers from its own tables.

A chapter ends with::

    found = Findings("03")
    found.add_comparison("greg-vs-energy-digits", "GReg at the selected weight has a lower mean FPR95 than the "
                         "energy loss on digits.", df, chosen, "energy loss")
    found.show()

``show`` displays the committed normal-mode record (``notebooks/findings/03.json``) next to this run.
``python -m gregnb.findings update|check [NN ...]`` rewrites or checks the records (see :mod:`.run`).
"""
from .chapter import Findings
from .record import VERDICTS, Claim, Comparison, Number, compare, comparison, summarize
from .stats import LEVEL, Effect, sign_test_p, welch_p
from .render import FindingsView, load_record, records_dir, write_record

__all__ = ["VERDICTS", "LEVEL", "Claim", "Comparison", "Effect", "Findings", "Number", "compare", "comparison",
           "summarize", "sign_test_p", "welch_p", "FindingsView", "load_record", "records_dir", "write_record"]
