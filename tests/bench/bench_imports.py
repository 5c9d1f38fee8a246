"""What each library the daemon loads costs in RSS (run by `make bench`; prints, asserts nothing).

One fresh interpreter imports the daemon's libraries one after another, in the order the daemon needs them,
and reads its own /proc/self/status after each: the increment is that library's share (its Python objects,
its shared objects' touched pages, the stdlib modules it pulls in first). The sum is the floor under the
daemon's RSS before it opens a single connection; `bench_daemon.py` gives the figure with everything running.
Run twice by default and the second run reported, so the .pyc files exist and compiling does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys

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
    ("mynabox (+ fonts loaded)", "import mynabox.wiring, mynabox.render.fonts as f; f.big(), f.small()"),
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
"""


def run_once() -> list[tuple[str, dict[str, int]]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(STEPS)], check=True, capture_output=True, text=True
    ).stdout
    return [tuple(json.loads(line)) for line in out.splitlines()]  # type: ignore[misc]


def main() -> int:
    run_once()  # writes any missing .pyc
    rows = run_once()
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
    print(json.dumps({"rss_after_imports_mb": total, "steps": figures}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
