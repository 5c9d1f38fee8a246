"""Fuzz target: the 救急用サマリー from the summary service (summary/model.py) and the flags derived from it.

Input: the JSON document of a ``found`` response's ``summary``. It may only be refused with
SummaryFormatError (or be no JSON); an accepted one must give flags and survive its own round trip.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date

from harness import main


def setup() -> Callable[[bytes], None]:
    from mynabox.summary.flags import derive_flags
    from mynabox.summary.model import Summary, SummaryFormatError

    today = date(2026, 11, 25)

    def one_input(data: bytes) -> None:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            return
        try:
            summary = Summary.from_json(doc)
        except SummaryFormatError:
            return
        for flag in derive_flags(summary, today=today):
            assert flag.label and flag.evidence
        assert Summary.from_json(json.loads(json.dumps(summary.to_json()))) == summary

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
