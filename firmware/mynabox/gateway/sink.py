"""The receiver's file sink: each opened message as JSON. Those files hold patient data and belong on the
gateway's encrypted storage."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # A lone surrogate (valid in JSON text, not in UTF-8) is written as its JSON escape.
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        json.dump(doc, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target
