"""Findings that cannot drift: each chapter records its claims, verdicts and numbers from its own tables.

A chapter ends with::

    found = Findings("03")
    found.add_paired("greg-vs-energy-digits", "GReg at the selected weight has a lower mean FPR95 than the "
                     "energy loss on digits.", paired_verdict(df, chosen, "energy loss"))
    found.show()

``show`` displays the committed normal-mode record (``notebooks/findings/03.json``) next to this run.
``python -m gregnb.findings update|check [NN ...]`` rewrites or checks the records (see :mod:`.run`).
"""
from .chapter import Findings
from .record import VERDICTS, Claim, Number, compare, sign_test_p, summarize, verdict_from_wins
from .render import FindingsView, load_record, records_dir, write_record

__all__ = ["VERDICTS", "Claim", "Findings", "Number", "compare", "summarize", "verdict_from_wins", "sign_test_p", "FindingsView",
           "load_record", "records_dir", "write_record"]
