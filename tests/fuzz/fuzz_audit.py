"""Fuzz target: audit log verification (payload/audit.py, as `mynabox audit verify` and the log's reopen
use it) and the published audit body the gateway parses.

Input: a mode byte, then the log file's bytes. ``verify_lines`` must return a verdict and never raise; each
line parses or raises AuditFormatError; the bytes as a published body parse or raise AuditFormatError.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable

from harness import Reader, main


def setup() -> Callable[[bytes], None]:
    from mynabox.payload.audit import AuditFormatError, ChainedAudit, PublishedAudit, verify_lines
    from mynabox.payload.keys import Secret

    key = Secret(b"k" * 32)

    def one_input(data: bytes) -> None:
        r = Reader(data)
        mode = r.byte()
        text = r.rest()
        lines = [line for line in text.split(b"\n") if line.strip()]
        verdict = verify_lines(lines, key=key if mode & 1 else None)
        assert verdict.ok == (verdict.first_bad_index is None)
        assert 0 <= verdict.checked <= len(lines)
        for line in lines[:4]:
            try:
                entry = ChainedAudit.from_json_line(line)
            except AuditFormatError:
                continue
            assert ChainedAudit.from_json_line(entry.to_json_line()) == entry
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            return
        with contextlib.suppress(AuditFormatError):
            PublishedAudit.from_dict(raw)

    return one_input


if __name__ == "__main__":
    main(setup)
    sys.exit(0)
