"""The receiver's file sink: each opened message as JSON. Those files hold patient data and belong on the
gateway's encrypted storage."""

from __future__ import annotations

import json
from pathlib import Path

from mynabox.adapters.files import write_atomic
from mynabox.gateway.fhir import export
from mynabox.payload.seal import Opened


def write_json(directory: Path, opened: Opened) -> Path:
    """``<dir>/<device>/<message id>.json`` (0600), atomically: a redelivery rewrites the same file."""
    target_dir = directory / opened.device_id
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = target_dir / f"{opened.message_id}.json"
    doc = {
        "message_id": opened.message_id,
        "device_id": opened.device_id,
        "kind": str(opened.kind),
        "created_at": opened.created_at.isoformat(),
        "clock_synced": opened.clock_synced,
        "seq": opened.seq,
        "body": dict(opened.body),
    }
    # A lone surrogate (valid in JSON text, not in UTF-8) is written as its JSON escape.
    data = json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8", "backslashreplace")
    write_atomic(target, data, mode=0o600)
    return target


def write_fhir(directory: Path, opened: Opened) -> Path | None:
    """A summary's FHIR R4 Bundle as ``<dir>/<device>/<message id>.fhir.json`` (0600); None otherwise."""
    if opened.kind.value != "summary":
        return None
    data = json.dumps(export(opened), ensure_ascii=False, indent=1).encode("utf-8", "backslashreplace")
    target_dir = directory / opened.device_id
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = target_dir / f"{opened.message_id}.fhir.json"
    write_atomic(target, data, mode=0o600)
    return target
