"""The last update result on the state partition (mynabox.update.lastresult), written whole or not at all."""

from __future__ import annotations

from pathlib import Path

from mynabox.adapters.files import write_atomic
from mynabox.update import lastresult

NAME = "update-result.json"


def write(state_dir: Path, result: lastresult.Result) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(state_dir / NAME, result.encode().encode(), mode=0o644)


def read(state_dir: Path) -> lastresult.Result | None:
    try:
        with (state_dir / NAME).open("rb") as f:
            return lastresult.parse(f.read(lastresult.MAX_BYTES + 1).decode("utf-8", "replace"))
    except OSError:
        return None
