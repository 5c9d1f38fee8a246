"""The memory benchmarks' page cache state (`pagecache.settle`): a file cached in large folios (as pip writes
a wheel's files, in 1 MiB blocks) is mapped by the next process in 4 KiB pages once settled, so a process's
file-backed RSS no longer depends on how the file entered the cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pagecache import large_folio_mb, settle

MAPPER = """
import mmap, sys
with open(sys.argv[1], "rb") as f:
    view = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
for offset in (0, 1 << 20, 3 << 20):  # three touches, far apart
    view[offset]
rss = 0
inside = False
for line in open("/proc/self/smaps"):
    head = line.split()
    if not head[0].endswith(":"):
        inside = head[-1] == sys.argv[1]
    elif inside and head[0] == "Rss:":
        rss += int(head[1])
print(rss, flush=True)
sys.stdin.read()
"""


def mapped(path: Path) -> tuple[int, float | None]:
    """A fresh process maps `path` and touches three pages: its RSS of the file (KiB) and the MB of its file
    pages in large folios."""
    with subprocess.Popen(
        [sys.executable, "-c", MAPPER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        rss = int(proc.stdout.readline())
        large = large_folio_mb(proc.pid)
        proc.stdin.close()
        assert proc.wait() == 0
    return rss, large


def test_a_settled_file_is_mapped_in_small_pages(tmp_path: Path) -> None:
    path = tmp_path / "lib.so"
    block = bytes(range(256)) * 4096  # 1 MiB
    with path.open("wb") as f:
        for _ in range(4):
            f.write(block)
    rss_before, large_before = mapped(path)
    if large_before is None:
        pytest.skip("the kernel shows us no page frames (not root)")
    if large_before == 0:
        pytest.skip("this kernel caches the file in 4 KiB pages already: nothing to settle")
    assert settle([str(path)]) == 1
    rss_after, large_after = mapped(path)
    assert large_after == 0
    assert rss_after < rss_before
    assert rss_after <= 3 * 256  # at most a fault-around window (64 KiB here, 256 at most) per touch
