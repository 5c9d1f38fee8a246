"""One small file read out of a root slot's ext4 without mounting it.

debugfs (e2fsprogs, in the image) opens the partition read-only in user space: a mount would replay the
journal and change the slot RAUC has just written (and that its hash index describes), and the slot's
files are never executed or trusted here, only read within a size limit.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

DEBUGFS = "debugfs"
TIMEOUT_S = 60.0
_PYTHON_DIR = re.compile(r"^/\d+/040\d{3}/\d+/\d+/(python3\.\d{1,3})/", re.M)


class SlotFileError(Exception):
    """The file could not be read from the slot (the message says why; no file contents in it)."""


def _debugfs(device: Path, request: str, limit: int) -> bytes:
    try:
        done = subprocess.run(
            [DEBUGFS, "-R", request, str(device)], capture_output=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlotFileError(f"debugfs could not read {device}: {type(err).__name__}") from None
    # debugfs exits 0 even when the file is missing: its complaints (the cause first) follow its banner.
    complaints = [
        line
        for line in done.stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith("debugfs ")
    ]
    if done.returncode != 0 or complaints:
        reason = complaints[0][:200] if complaints else f"exit {done.returncode}"
        raise SlotFileError(f"debugfs on {device}: {reason}")
    if len(done.stdout) > limit:
        raise SlotFileError(f"{request.split(' ', 1)[-1]} in {device} is larger than {limit} bytes")
    return done.stdout


def site_packages(device: Path, venv: str = "/opt/mynabox/venv") -> str:
    """The firmware's site-packages directory in the slot (its Python version is the slot's own)."""
    listing = _debugfs(device, f"ls -p {venv}/lib", 64 * 1024).decode("utf-8", "replace")
    found = sorted(set(_PYTHON_DIR.findall(listing)))
    if len(found) != 1:
        raise SlotFileError(f"{device}: expected one python3.X in {venv}/lib, found {len(found)}")
    return f"{venv}/lib/{found[0]}/site-packages"


def read_text(device: Path, path: str, limit: int) -> str:
    if not path.startswith("/") or any(c in path for c in "\n\r\"'\\") or "/../" in path:
        raise SlotFileError("not a plain absolute path")
    return _debugfs(device, f"cat {path}", limit).decode("utf-8", "replace")
