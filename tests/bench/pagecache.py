"""The page cache under the memory figures: one state for every file the floor and the daemon map.

A process's file-backed RSS is the pages of its mapped files that the kernel put in its page tables, and that
depends on the page cache as much as on the process. This host's kernel (6.18) keeps ext4 files in large
folios when they entered the cache in large pieces (pip writes each file of a wheel in 1 MiB blocks; a read()
in small steps ramps the readahead up to large folios) and maps a cached large folio whole on a fault, where
an order-0 page cache gives the fault-around window (64 KiB) only. So the same interpreter with the same
imports read 45.4 MB with cryptography's `_rust.abi3.so` cached as pip wrote it and 43.5 MB once those pages
had been dropped (by memory pressure, or the host's proactive reclaim of idle unmapped file pages) and read
back by page faults (order 0); the daemon, which touches more of the file, moved by only 1.1 MB, so "ours over
the floor" read 9.3 or 10.5 depending on what the host had done to the cache.

`settle()` drops the cached pages of every file those processes map (written back first; pages some other
process maps stay) and faults them back in through a mapping it keeps, which caches them in 4 KiB pages as
the box's kernel does (6.12, whose ext4 has no large folios), all of them and for the whole run, as on a box
that has run a while; `large_folio_mb(pid)` says how much of a process's file-backed RSS still sits in large
folios (≈ 0 when the state held). Warming the cache with read() instead would make large folios here.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 2 << 20
KPF_ANON, KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 12, 15, 16
PRESENT, PFN_MASK = 1 << 63, (1 << 55) - 1


def mapped_files(pid: int) -> set[str]:
    """The regular files mapped into process `pid` (its shared objects, locale data, ...)."""
    files = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/") and not fields[5].endswith(" (deleted)"):
            files.add(fields[5])
    return {f for f in files if os.path.isfile(f)}


_held: list[mmap.mmap] = []  # the settled files, mapped here whole until the next settle()


def settle(paths: Iterable[str]) -> int:
    """Drops the cached pages of `paths` that no other process maps, reads every page back in through a
    mapping of ours (page faults: order-0 pages) and keeps that mapping until the next call, so every page
    stays cached and mapped (a host that reclaims idle unmapped file pages leaves them alone); returns how
    many files it reached. Cold pages would not do: a fault-around skips the pages whose read is still under
    way, so a loaded host's disk would decide how much of each window a process maps."""
    release()
    done = 0
    for path in sorted(set(paths)):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)  # dirty pages (a fresh install) are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            size = os.fstat(fd).st_size
            for offset in range(0, size, CHUNK):  # readahead in pages (one call reads at most the bdi's ra)
                os.posix_fadvise(fd, offset, CHUNK, os.POSIX_FADV_WILLNEED)
            if size:
                view = mmap.mmap(fd, size, prot=mmap.PROT_READ)
                view.madvise(mmap.MADV_RANDOM)  # no readahead of its own: sequential faults grow folios
                for offset in range(0, size, PAGE):
                    view[offset]  # waits for the page's read
                _held.append(view)
            done += 1
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)
    return done


def release() -> None:
    """Unmaps what settle() holds."""
    while _held:
        _held.pop().close()


def large_folio_mb(pid: int) -> float | None:
    """MB of process `pid`'s file-backed resident pages that are in large folios (/proc/kpageflags), or None
    where the kernel does not show page frames to us (not root)."""
    try:
        pagemap = open(f"/proc/{pid}/pagemap", "rb")  # noqa: SIM115 - two files read in one loop
        flags = open("/proc/kpageflags", "rb")  # noqa: SIM115
    except OSError:
        return None
    large = seen = 0
    with pagemap, flags:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not fields[5].startswith("/"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // PAGE * 8)
            raw = pagemap.read((end - start) // PAGE * 8)
            for (entry,) in struct.iter_unpack("Q", raw):
                if not entry & PRESENT:
                    continue
                pfn = entry & PFN_MASK
                if pfn == 0:
                    return None  # frames hidden: no CAP_SYS_ADMIN
                flags.seek(pfn * 8)
                (kpf,) = struct.unpack("Q", flags.read(8))
                if kpf >> KPF_ANON & 1:
                    continue  # a private copy (relocations), counted as anonymous
                seen += 1
                large += (kpf >> KPF_COMPOUND_HEAD & 1) | (kpf >> KPF_COMPOUND_TAIL & 1)
    return round(large * PAGE / 2**20, 1) if seen else 0.0
