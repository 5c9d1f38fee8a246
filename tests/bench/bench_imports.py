"""What each library the daemon loads costs in RSS (run by `make bench`; prints, asserts nothing).

One fresh interpreter imports the daemon's libraries one after another, in the order the daemon needs them,
and reads its own /proc/self/status after each: the increment is that library's share (its Python objects,
its shared objects' touched pages, the stdlib modules it pulls in first). The sum is the floor under the
daemon's RSS before it opens a single connection; `bench_daemon.py` gives the figure with everything running.
Our package is byte-compiled first, as pip does when it installs the firmware on the Pi (the daemon's root is
read-only there, and PYTHONDONTWRITEBYTECODE may be set here): compiling 50 modules at import costs ≈ 1 MB.
The page cache of every file these processes map is settled first (`pagecache`: order-0 pages, as on the box;
the file MB below moved by 2 MB with the host's page cache before).

The peer: Debian's python3-cryptography, built against the system libcrypto that `ssl` already maps (the one
step that could shrink the cryptography wheel's own OpenSSL), priced the same way under Debian's python3
where it is installed. It is older than joserfc's minimum, so it is a measurement, not an option today.
"""

from __future__ import annotations

import compileall
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import NamedTuple

from pagecache import large_folio_mb, mapped_files, settle

import mynabox

STEPS: list[tuple[str, str]] = [
    ("interpreter", ""),
    ("ssl (system libssl/libcrypto)", "import ssl"),
    ("sqlite3", "import sqlite3"),
    (
        "cryptography (own OpenSSL)",
        "import cryptography.x509, cryptography.hazmat.primitives.asymmetric.ec, "
        "cryptography.hazmat.primitives.ciphers.aead",
    ),
    ("joserfc", "import joserfc.jwe, joserfc.jws, joserfc.jwk"),
    ("paho-mqtt", "import paho.mqtt.client"),
    ("pyscard", "import smartcard.System, smartcard.scard"),
    ("Pillow", "import PIL.Image, PIL.ImageDraw, PIL.ImageFont"),
    ("luma.oled", "import luma.oled.device, luma.core.interface.serial"),
    ("gpiozero", "import gpiozero"),
    ("mynabox", "import mynabox.wiring, mynabox.commands.run"),  # fonts: glyphs are drawn when first shown
]

PROBE = """
import json, sys
def status():
    wanted = {"RssAnon": "anon", "RssFile": "file"}
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in wanted:
            out[wanted[key]] = int(value.split()[0])
    out["modules"] = len(sys.modules)
    return out
for name, stmt in json.loads(sys.argv[1]):
    exec(stmt)
    print(json.dumps([name, status()]), flush=True)
sys.stdin.read()  # held until the caller has read our mappings
"""


PRESCRIBED = [name for name, _ in STEPS if not name.startswith("mynabox")]
FLOOR_SAMPLES = 5
CRYPTOGRAPHY = "cryptography (own OpenSSL)"
DEBIAN_PYTHON = "/usr/bin/python3"
UNIT = Path(__file__).resolve().parents[2] / "systemd" / "mynabox.service"


def unit_environment() -> dict[str, str]:
    """The daemon unit's Environment= settings (e.g. the allocator's): the benchmarks run under them, so their
    figures are those of the process systemd starts on the box, and the floor is measured the same way."""
    env: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            for assignment in shlex.split(line.removeprefix("Environment=")):
                key, _, value = assignment.partition("=")
                env[key] = value
    return env


class Probe(NamedTuple):
    rows: list[tuple[str, dict[str, int]]]  # each step's name and the process's RssAnon/RssFile KiB after it
    files: set[str]  # the files mapped at the end
    large_folio_mb: float | None  # of its file-backed RSS, in large folios (pagecache.large_folio_mb)


def run_once(python: str = sys.executable, steps: list[tuple[str, str]] = STEPS) -> Probe:
    with subprocess.Popen(
        [python, "-c", PROBE, json.dumps(steps)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **unit_environment()),
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        rows = []
        for _ in steps:
            line = proc.stdout.readline()
            if not line:
                raise subprocess.CalledProcessError(proc.wait(), python)
            rows.append(tuple(json.loads(line)))
        files, large = mapped_files(proc.pid), large_folio_mb(proc.pid)
        proc.stdin.close()
        if proc.wait() != 0:
            raise subprocess.CalledProcessError(proc.returncode, python)
    return Probe(rows, files, large)  # type: ignore[arg-type]


@cache
def daemon_files() -> frozenset[str]:
    """Every file an interpreter with the daemon's libraries and modules imported maps."""
    return frozenset(run_once().files)


def settle_page_cache(also: frozenset[str] = frozenset()) -> int:
    """Drops the cached pages of the daemon's files (and `also`) that no process maps: the next process
    faults them in as order-0 pages (`pagecache`). Returns how many files it reached."""
    return settle(daemon_files() | also)


def floor(also: frozenset[str] = frozenset(), samples: int = FLOOR_SAMPLES) -> dict[str, float | None]:
    """A fresh interpreter with the prescribed libraries imported (no line of ours), on a settled page cache
    (the daemon's files and `also`): RSS, anonymous and file-backed MB, the median of `samples` processes
    (where ASLR puts each library against the 64 KiB fault-around windows moves a process's file-backed RSS
    by up to 0.2 MB), and MB of their file-backed pages in large folios (≈ 0 when settled)."""
    settle_page_cache(also)
    probes = [run_once(steps=[step for step in STEPS if step[0] in PRESCRIBED]) for _ in range(samples)]
    anon = statistics.median_low(p.rows[-1][1]["anon"] for p in probes)
    file = statistics.median_low(p.rows[-1][1]["file"] for p in probes)
    large = [p.large_folio_mb for p in probes]
    return {
        "floor_mb": mb(anon + file),
        "floor_anon_mb": mb(anon),
        "floor_file_mb": mb(file),
        "floor_large_folio_mb": None if None in large else max(x for x in large if x is not None),
    }


def mb(kib: int) -> float:
    return round(kib / 1024, 1)


def debian_cryptography() -> tuple[str, float, float] | None:
    """The cryptography step under Debian's python3 with Debian's package, or None where it is missing."""
    python = shutil.which(DEBIAN_PYTHON)
    if python is None:
        return None
    probe = "import cryptography; print(cryptography.__version__, cryptography.__file__)"
    found = subprocess.run([python, "-c", probe], check=False, capture_output=True, text=True)
    if found.returncode != 0 or not found.stdout.startswith(tuple("0123456789")):
        return None
    steps = STEPS[: [name for name, _ in STEPS].index(CRYPTOGRAPHY) + 1]
    settle(run_once(python, steps).files)  # its files in the same page cache state as ours
    rows = run_once(python, steps).rows  # Debian's packages come byte-compiled
    before, after = rows[-2][1], rows[-1][1]
    return found.stdout.split()[0], mb(after["anon"] - before["anon"]), mb(after["file"] - before["file"])


def main() -> int:
    compileall.compile_dir(Path(mynabox.__file__).parent, quiet=1)
    settled = settle_page_cache()
    probe = run_once()
    rows = probe.rows
    figures: dict[str, dict[str, float]] = {}
    prev = {"anon": 0, "file": 0, "modules": 0}
    print(f"{'step':32s} {'anon MB':>8s} {'file MB':>8s} {'modules':>8s}")
    for name, now in rows:
        step = {
            "anon_mb": round((now["anon"] - prev["anon"]) / 1024, 1),
            "file_mb": round((now["file"] - prev["file"]) / 1024, 1),
            "modules": now["modules"] - prev["modules"],
        }
        figures[name] = step
        print(f"{name:32s} {step['anon_mb']:8.1f} {step['file_mb']:8.1f} {step['modules']:8d}")
        prev = now
    total = round((prev["anon"] + prev["file"]) / 1024, 1)
    print(f"{'total':32s} {prev['anon'] / 1024:8.1f} {prev['file'] / 1024:8.1f} {prev['modules']:8d}")
    print(f"RSS with every library loaded, before any work: {total} MB (daemon goal ≤ 35)")
    print(
        f"page cache: {settled} mapped files settled first; file-backed MB in large folios: "
        f"{probe.large_folio_mb} (0: order-0 pages, as on the box)"
    )
    floor = round(sum(figures[n]["anon_mb"] + figures[n]["file_mb"] for n in PRESCRIBED), 1)
    print(f"of which the interpreter and the prescribed libraries, before a line of ours: {floor} MB")
    peer = debian_cryptography()
    result: dict[str, object] = {
        "rss_after_imports_mb": total,
        "prescribed_floor_mb": floor,
        "large_folio_mb": probe.large_folio_mb,
    }
    if peer is None:
        print(f"peer: no Debian python3-cryptography for {DEBIAN_PYTHON} (apt install python3-cryptography)")
    else:
        version, anon, file = peer
        ours = figures[CRYPTOGRAPHY]
        saved = round(ours["anon_mb"] + ours["file_mb"] - anon - file, 1)
        print(
            f"peer: Debian's cryptography {version} on the system libcrypto: "
            f"{anon} anon + {file} file MB, {saved} MB less than the wheel"
        )
        result.update(debian_cryptography=version, debian_cryptography_saves_mb=saved)
    print(json.dumps({**result, "steps": figures}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
