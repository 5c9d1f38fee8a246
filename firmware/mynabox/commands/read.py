"""`mynabox read`: wait for one card, read and check it, print the result — no personal data.

The card appears only as a keyed hash of its certificate: the key comes from `--key-file` (e.g. the
box's audit key, so the hash matches the audit records) or is random for this run, so hashes printed by
two runs cannot be linked.

Exit codes: 0 read OK; 2 bad arguments (unreadable or empty key file); 3 not a My Number Card; 4 card
removed mid-read (hold it again); 5 no reader or no PC/SC service (or the reader failed under the read); 6 no
card within --timeout; 7 the card did not answer properly; 8 the card did not answer (its ATR, then nothing
within --read-timeout, or no ISO 7816 at all: take it away and hold it again). Codes 3, 4, 5, 7 and 8 are
`card.errors.read_failure`'s failures, as the daemon shows them.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mynabox.vocab import ReadFailure

if TYPE_CHECKING:
    from mynabox.app.cardread import ReadRecord

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NOT_MY_NUMBER_CARD = 3
EXIT_REMOVED = 4
EXIT_NO_READER = 5
EXIT_TIMEOUT = 6
EXIT_CARD_ERROR = 7
EXIT_UNRESPONSIVE = 8

# Each failure of `card.errors.read_failure` as an exit code and the outcome printed.
FAILURE_EXITS = {
    ReadFailure.NOT_MY_NUMBER_CARD: (EXIT_NOT_MY_NUMBER_CARD, "not-my-number-card"),
    ReadFailure.REMOVED: (EXIT_REMOVED, "card-removed"),
    ReadFailure.READER_ERROR: (EXIT_NO_READER, "no-reader"),
    ReadFailure.MALFORMED: (EXIT_CARD_ERROR, "card-error"),
    ReadFailure.UNRESPONSIVE: (EXIT_UNRESPONSIVE, "card-unresponsive"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--reader", metavar="NAME", help="only readers whose name contains NAME")
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait (default 30)"
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        metavar="S",
        help="seconds the read of a presented card may take (default: 5, or --timeout if smaller)",
    )
    parser.add_argument("--test-ca", action="store_true", help="also trust the test JPKI CA (virtual cards)")
    parser.add_argument(
        "--key-file", type=Path, metavar="FILE", help="key for the card hash (default: random)"
    )


def _fail(args: argparse.Namespace, code: int, outcome: str, message: str) -> int:
    if args.json:
        print(json.dumps({"outcome": outcome, "exit_code": code, "message": message}))
    else:
        print(f"{outcome}: {message}", file=sys.stderr)
    return code


def _hash_key(path: Path | None) -> bytes:
    if path is None:
        return secrets.token_bytes(32)
    key = path.read_bytes()
    if not key:
        raise ValueError("key file is empty")
    return key


def report_fields(report: ReadRecord, *, key_from_file: bool) -> dict[str, object]:
    """What `read` prints: never the certificate or anything from its subject."""
    caps = report.jpki.caps
    return {
        "outcome": "ok",
        "reader": report.reader,
        "card_type": report.jpki.card_type.value,
        "card_hash": report.card_hash,
        "card_hash_key": "key file" if key_from_file else "random per run",
        **{f"certificate_{k}": v for k, v in report.check.as_dict().items()},
        "certificate_validity_verified": report.check.validity_verified,
        "apdus": report.jpki.apdus,
        "ms": round(report.ms, 2),
        "extended_le": caps.extended,
        "sfi_read": caps.sfi,
        "certificate_bytes": caps.length_hint,
    }


def run(args: argparse.Namespace) -> int:
    from mynabox.adapters.clock import clock_synced
    from mynabox.adapters.pcsc import PcscReader
    from mynabox.app.cardread import READ_LIMIT_S, JpkiReader
    from mynabox.card.certcheck import TrustStore
    from mynabox.card.errors import CardError, CardRemoved, ReadTimeout, read_failure

    try:
        key = _hash_key(args.key_file)
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return _fail(args, EXIT_USAGE, "bad-key-file", f"cannot use the key file: {reason}")
    limit = args.read_timeout if args.read_timeout is not None else min(READ_LIMIT_S, max(1.0, args.timeout))
    with PcscReader(args.reader) as pcsc:
        reader = JpkiReader(pcsc, trust=TrustStore.jlis(test_root=args.test_ca), hash_key=key)
        try:
            report = reader.read(timeout=args.timeout, clock_synced=clock_synced(), limit_s=limit)
        except CardError as err:
            code, outcome = FAILURE_EXITS[read_failure(err)]
            message = str(err)
            if isinstance(err, CardRemoved):
                message = f"{err} — hold the card again"
            elif isinstance(err, ReadTimeout):
                message = f"the card gave no answer within {limit:g} s — take it away and hold it again"
            elif code == EXIT_UNRESPONSIVE:
                message = f"{err} — take it away and hold it again"
            return _fail(args, code, outcome, message)
    if report is None:
        return _fail(args, EXIT_TIMEOUT, "timeout", f"no card within {args.timeout:g} s")
    fields = report_fields(report, key_from_file=args.key_file is not None)
    if args.json:
        print(json.dumps(fields, ensure_ascii=False))
    else:
        _print_text(fields)
    return EXIT_OK


def _print_text(fields: dict[str, object]) -> None:
    synced = "synced" if fields["certificate_clock_synced"] else "NOT synced: dates unverified"
    lines = [
        ("card", f"{fields['card_type']}, hash {fields['card_hash']} ({fields['card_hash_key']})"),
        ("certificate", f"{fields['certificate_status']}, issuer {fields['certificate_issuer_generation']}"),
        ("valid", f"{fields['certificate_not_before']} .. {fields['certificate_not_after']}"),
        ("clock", synced),
        ("read", f"{fields['apdus']} APDUs in {fields['ms']} ms on {fields['reader']}"),
        ("reader caps", f"extended Le {fields['extended_le']}, SFI read {fields['sfi_read']}"),
    ]
    for label, value in lines:
        print(f"{label:<12} {value}")
