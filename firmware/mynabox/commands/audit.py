"""`mynabox audit verify`: check the hash chain of the audit log; one-line verdict, exit 0 (intact) or 1."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PATH = Path("/var/lib/mynabox/audit.jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = sub.add_parser("verify", help="check the audit log's hash chain")
    verify.add_argument("--path", type=Path, default=DEFAULT_PATH, help=f"audit log (default {DEFAULT_PATH})")
    verify.add_argument("--key", type=Path, help="HMAC key file, if the chain is keyed")
    verify.add_argument(
        "--expected-head", help="last hash known elsewhere (e.g. at the gateway): catches a lost tail"
    )


def run(args: argparse.Namespace) -> int:
    from mynabox.adapters.audit import AuditLogError, verify_file
    from mynabox.adapters.keyfiles import load_audit_key
    from mynabox.payload.keys import KeyFileError

    try:
        key = None if args.key is None else load_audit_key(args.key)
        if not args.path.exists():
            print(f"audit log {args.path}: not found")
            return 1
        verdict, head = verify_file(args.path, key=key, expected_head=args.expected_head)
    except (AuditLogError, KeyFileError) as err:
        print(f"FAIL {err}")
        return 1
    if verdict.ok:
        print(f"OK {verdict.checked} entries, head {head}")
        return 0
    print(f"FAIL at entry {verdict.first_bad_index} after {verdict.checked} good: {verdict.reason}")
    return 1
