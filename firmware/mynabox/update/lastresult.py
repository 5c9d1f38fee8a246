"""The last update's result as the box keeps it (`update-result.json` in the state directory) and publishes it
on its `state` topic: what `mynabox update install` and the health check ended with, the version and when.

Pure: the document in and out. The file is read as hostile input (bounded, typed, printable).
"""

from __future__ import annotations

import json
from datetime import datetime

from mynabox.record import record
from mynabox.update.text import printable

INSTALLED = "installed"  # written into the other slot, waiting for the switch
REFUSED = "refused"  # the bundle was refused before anything was written
FAILED = "failed"  # RAUC's install failed
GOOD = "good"  # the new slot passed its health check and was marked good
ROLLED_BACK = "rolled-back"  # the new slot failed its health check: back to the previous one
RESULTS = (INSTALLED, REFUSED, FAILED, GOOD, ROLLED_BACK)
MAX_BYTES = 4096


@record
class Result:
    result: str
    version: str
    at: datetime
    detail: str = ""

    def encode(self) -> str:
        return json.dumps(
            {
                "result": self.result,
                "version": self.version,
                "at": self.at.isoformat(timespec="seconds"),
                "detail": printable(self.detail, 200),
            }
        )

    def published(self) -> dict[str, str]:
        return {"result": self.result, "version": self.version, "at": self.at.isoformat(timespec="seconds")}


def parse(text: str) -> Result | None:
    """The kept result, or None when there is none usable (a damaged file is not an update result)."""
    if len(text) > MAX_BYTES:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    result, version, at, detail = (data.get(k) for k in ("result", "version", "at", "detail"))
    if result not in RESULTS or not isinstance(version, str) or not isinstance(at, str):
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return Result(
        result, printable(version, 40), when, printable(detail, 200) if isinstance(detail, str) else ""
    )
