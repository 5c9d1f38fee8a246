"""`make image-stream-test`: the bytes over the link for a firmware-only change, on the emulated box.

The box is the update test's (update-test.py: its test fleet signer and keyring, the health check's limit,
vmbox.py's launch). One bundle is made from the test copy's root A with a firmware-only change: the
firmware's `mynabox/__init__.py` in the venv with the next version (its byte code removed, so the new
source is what runs) — the bundle is still the whole root slot, as `make bundle` makes it, adaptive
(block-hash-index). The box boots slot A, then `mynabox update install https://…` with its client
certificate: the image's RAUC streams the bundle from the host's update server (range requests; the test
kit's UpdateServer counts the body bytes it sends) and, adaptive, reads only the 4 KiB blocks that neither
slot holds. Printed: the bundle's size (what the fetch fallback sends), the bytes the server sent, the
install's time, RAUC's own access statistics (its journal on the console); then the idle switch, READY on
slot B and the new version running there.
Run as root with the project's venv (≈ 10–15 min under TCG on a shared host):
  .venv/bin/python image-build/stream-test.py [--out DIR] [--keep DIR] [--stream auto|never]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from vmbox import READY, diagnose, exit_code, launch, plain, script  # noqa: E402

from update.conftest import Signer  # noqa: E402

VENV_LIB = "/opt/mynabox/venv/lib"
PY_VERSION = "/opt/mynabox/venv/bin/python -c 'import mynabox; print(\"version\", mynabox.__version__)'"
RAUC_LINES = re.compile(
    r"nbd dl_size: .*|access stats for .*|Building new hash index .*|using existing hash index .*"
    r"|Selected adaptive update method .*|Continuing after adaptive mode error.*|Remote URI detected.*"
    r"|downloaded \S+ of the full bundle|using HTTP/1 for streaming.*"
)


def update_test() -> ModuleType:
    return script("update-test")


def next_version(version: str) -> str:
    parts = version.split(".")
    return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])


def debugfs(root: Path, *commands: str, write: bool = False) -> str:
    script = root.with_suffix(".debugfs")
    script.write_text("".join(f"{c}\n" for c in commands))
    done = subprocess.run(
        ["debugfs", *(["-w"] if write else []), "-f", str(script), str(root)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    script.unlink()
    return done.stdout


def firmware_change(root: Path, work: Path) -> str:
    """The firmware-only change in a root image: mynabox's __init__.py with the next version, its byte code
    removed (the image's byte code is checked by hash only if told to: the source must be what runs).
    Returns the new version."""
    lib = debugfs(root, f"ls -p {VENV_LIB}")
    python = sorted(set(re.findall(r"/(python3\.\d+)/", lib)))
    if len(python) != 1:
        raise SystemExit(f"stream-test: no single python3.N in {VENV_LIB}: {python}")
    package = f"{VENV_LIB}/{python[0]}/site-packages/mynabox"
    source = work / "init.py"
    debugfs(root, f"dump {package}/__init__.py {source}")
    text = source.read_text()
    found = re.search(r'^__version__ = "([0-9.]+)"$', text, re.M)
    if found is None:
        raise SystemExit("stream-test: no __version__ in the image's mynabox/__init__.py")
    new = next_version(found.group(1))
    source.write_text(text.replace(found.group(0), f'__version__ = "{new}"'))
    caches = debugfs(root, f"ls -p {package}/__pycache__")
    pycs = re.findall(r"/(__init__\.cpython-\d+\.pyc)/", caches)
    debugfs(
        root,
        f"cd {package}",
        "rm __init__.py",
        f"write {source} __init__.py",
        f"cd {package}/__pycache__",
        *(f"rm {pyc}" for pyc in pycs),
        write=True,
    )
    fsck = subprocess.run(["e2fsck", "-fn", str(root)], capture_output=True, text=True, check=False)
    if fsck.returncode != 0:
        raise SystemExit(f"stream-test: root damaged by the change: {fsck.stdout[-500:]}")
    source.unlink()
    return new


def make_bundle(
    ut: ModuleType, image: Path, work: Path, signer: Signer, *, served: Path, figures: dict[str, object]
) -> None:
    root = work / "fw.ext4"
    ut.cut_root_a(image, root)
    figures["new_version"] = firmware_change(root, work)
    served.mkdir(exist_ok=True)
    t0 = time.monotonic()
    subprocess.run(
        [HERE / "make-bundle", "--rootfs", str(root), "--cert", str(signer.cert), "--key", str(signer.key),
         "--keyring", str(signer.ca), "--version", str(figures["new_version"]), "--build", "stream-test",
         "--out", str(served / "fw.raucb")],
        check=True,
    )  # fmt: skip
    figures["bundle_bytes"] = (served / "fw.raucb").stat().st_size
    figures["slot_image_bytes"] = root.stat().st_size
    figures["bundle_make_s"] = round(time.monotonic() - t0, 1)
    root.unlink()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build's output directory")
    parser.add_argument("--keep", type=Path, help="keep the work files (card, bundle, console log) here")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the first boot to READY")
    parser.add_argument("--step-timeout", type=float, default=1200.0, help="seconds for each later step")
    parser.add_argument(
        "--stream", default="auto", choices=("auto", "never"), help="update install's --stream"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ut = update_test()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mynabox-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    signer, options = ut.update_box(
        work, out=args.out, timeout=args.timeout, step_timeout=args.step_timeout, health_limit_min=5.0
    )
    served = work / "served"
    figures: dict[str, object] = {}
    step = args.step_timeout
    ok = False
    with launch(
        options, on_card=lambda image: make_bundle(ut, image, work, signer, served=served, figures=figures)
    ) as box:
        console = box.console
        v = box.work / "vehicle" / "summary"
        with ut.update_server(served, v / "server.pem", v / "server.key", v / "ca.pem") as server:
            if not ut.ready_for_updates(
                box, None, "stream-test", timeout=args.timeout, step=step, figures=figures
            ):
                return 1
            print(
                "stream-test: the box's RAUC:",
                plain(box.sh("rauc --debug --version 2>&1 | tail -n 2")).strip(),
            )
            url = f"https://10.0.2.2:{server.port}/fw.raucb"
            t0 = time.monotonic()
            started = ut.start_install(box, f"{url} --stream {args.stream}", 1)
            installed = ut.end_install(box, 1, started, t0, figures=figures, name="fw")
            figures["install_s"] = figures.pop("fw_fetch_and_install_s")
            figures["bytes_sent"] = server.sent("fw.raucb")
            figures["range_requests"] = server.requests("fw.raucb")
            size = int(str(figures["bundle_bytes"]))
            figures["sent_of_bundle_percent"] = round(100 * int(str(figures["bytes_sent"])) / size, 2)
            if installed is None:
                diagnose(console)
                return 1
            # RAUC's own account (its service's journal, forwarded to the console): what the streaming helper
            # downloaded, where each block came from.
            for line in RAUC_LINES.findall(plain(console.text(started))):
                print("stream-test: rauc:", line.strip(), flush=True)
            switched = ut.wait_slot(box, "B", started, step)
            t_switch = time.monotonic()
            ready_b = None if switched is None else console.wait(READY, step, switched)
            if ready_b is None:
                print("stream-test: slot B did not come up")
                diagnose(console)
                return 1
            figures["switch_to_ready_s"] = round(time.monotonic() - t_switch, 1)
            running = plain(box.sh(PY_VERSION))
            figures["running_on_b"] = (re.findall(r"^version (\S+)", running, re.M) or ["?"])[-1]
            ok = figures["running_on_b"] == figures["new_version"]
            if console.wait(ut.HEALTHY.format(slot="B"), step, ready_b) is not None:
                figures["switch_to_marked_good_s"] = round(time.monotonic() - t_switch, 1)
    print(json.dumps({**box.figures, **figures}))
    return exit_code(ok, work, args.keep)


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
