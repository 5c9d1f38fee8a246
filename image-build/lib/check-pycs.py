"""Fails when a byte-code file under DIR is not unchecked-hash (PEP 552 flags 0b01): a timestamp pyc records
when its source was installed, so two builds differ, and mkfs.sh's fixed file times make it stale on the
read-only root, where every start compiles the module again.
  check-pycs.py DIR"""

from __future__ import annotations

import sys
from pathlib import Path

UNCHECKED_HASH = 0b01
# The host's Python reads the image's byte code: since 3.7 every pyc keeps its flags in bytes 4-8.
MIN_HEADER = 16


def offenders(root: Path) -> list[str]:
    bad = []
    for pyc in sorted(root.rglob("*.pyc")):
        header = pyc.read_bytes()[:MIN_HEADER]
        flags = int.from_bytes(header[4:8], "little") if len(header) == MIN_HEADER else None
        if flags != UNCHECKED_HASH:
            kind = "truncated" if flags is None else ("timestamp" if flags == 0 else f"flags {flags}")
            bad.append(f"{pyc.relative_to(root)} ({kind})")
    return bad


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: check-pycs.py DIR", file=sys.stderr)
        return 2
    bad = offenders(Path(argv[0]))
    for line in bad[:20]:
        print(f"check-pycs: not unchecked-hash byte code: {line}", file=sys.stderr)
    if bad:
        print(f"check-pycs: {len(bad)} such files under {argv[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
