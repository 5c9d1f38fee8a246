"""`make image-update-test`: a field update of the emulated box, end to end, through the image's own RAUC,
U-Boot and boot.scr (image-build/vmbox.py launches the box as the boot test does).

1. A test update CA and signer are made here (in the work directory; never committed). The test copy's root A
   gets that CA as /etc/rauc/keyring.pem (the built image has the fleet's, or none), beside the boot test's
   simulated hardware. Two bundles are made with `make-bundle --rootfs` from that root A, cut out of the
   card before the power-on: "good" (root A as it is) and "bad" (the same plus a mynabox.service drop-in
   whose daemon never reaches READY: a firmware that does not work).
2. The box boots slot A (mynabox-health marks it good), installs each bundle over HTTPS from a host server
   with its own client certificate (`mynabox update install https://…`: the image's RAUC streams it, an
   adaptive bundle, so only what slot A lacks crosses the link; the server counts the bytes), RAUC writes
   slot B, and the daemon switches when idle ([update] idle_min set short in the test copy's config).
3. The bad bundle: slot B boots, its daemon never gets READY, mynabox-health marks it bad after
   the health limit (MYNABOX_HEALTH_LIMIT_S, a drop-in in the test copy's root) and reboots: U-Boot boots
   slot A, READY again: the rollback, unattended.
4. The good bundle: slot B boots, READY, the health check marks it good; `rauc status` says B is booted.
Before the bad bundle, the refusals, each ending with nothing switched: a bundle signed under another CA,
one for another board, an older version (refused before RAUC writes), and a firmware whose outbox this one
could not read after a rollback (RAUC writes slot B, `update install` reads the slot's storage-formats.json,
refuses and marks B bad: no switch follows). After the bad bundle's rollback, a bundle whose init cannot
run (systemd replaced by junk): PID 1 dies, the kernel panics and reboots (panic=10), U-Boot spends B's
three tries and boots A. Then a bundle whose PID 1 hangs (systemd replaced by a script that sleeps for
ever: no panic, no hardware watchdog opened): the softdog the slot's boot stage arms resets each of B's
tries (softdog.soft_margin after the initramfs loaded it), U-Boot spends the three and boots A. Then a
bundle whose initramfs hangs at its first line, before softdog loads (its /init replaced): only the early
watchdog B's own stage arms on a trial boot (qemu's i6300esb, mynabox-boot.cmd) resets each try.
Figures printed at the end: bundle size, bytes sent, install time (`*_fetch_and_install_s`: the streamed
install now), switch → READY, health check, rollback.
Run as root with the project's venv (`--only bad` runs the never-READY rollback alone; repeat for more parts;
`--reuse-bundles` keeps a run before's signer and bundles in --keep):
  .venv/bin/python image-build/update-test.py [--out DIR] [--keep DIR]
      [--only refusals|bad|panic|hang|early|good]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType

from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.patients import patient
from mynabox_testkit.updateserver import UpdateServer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from vmbox import READY, Box, Options, boot_test, diagnose, exit_code, launch, partition, plain  # noqa: E402

from support.vscard import VscardCard  # noqa: E402
from update.conftest import Signer, make_signer  # noqa: E402

IDENTITY = "/var/lib/mynabox/identity"
MYNABOX = "/opt/mynabox/venv/bin/mynabox"
HEALTHY = "health: slot {slot} is healthy"
# RAUC's lines around the slot write (the install's longest part: the tap goes in between). RAUC logs
# "writing data to device" for a whole-image copy only; this line comes before an adaptive write too.
WRITING = "Updating /dev/disk/by-partuuid/6d796e61-03 with "  # … /run/rauc/mnt/bundle/rootfs.ext4
WRITTEN = "Updating slot rootfs.1 status"
BAD_DROPIN = (
    "# update test only: a firmware whose daemon never reaches READY\n"
    "[Service]\nExecStart=\nExecStart=/bin/sleep infinity\n"
)


def cut_root_a(image: Path, dest: Path) -> None:
    offset, size = partition(image, 1)
    subprocess.run(
        ["dd", "bs=1M", "status=none", "iflag=skip_bytes,count_bytes", f"if={image}", f"of={dest}",
         f"skip={offset}", f"count={size}", "conv=sparse"],
        check=True,
    )  # fmt: skip


# The refused bundles: name → (the reason `update install` must give, extra make-bundle arguments).
REFUSED = {
    "stranger": ("RAUC refused it", ()),  # signed under another CA: the signer is swapped below
    "other-board": ("this box is 'mynabox-rpi-arm64'", ("--compatible", "mynabox-other-board")),
    "older": ("is older than the running", ("--version", "0.0.1")),
    "newer-outbox": ("could not read it after a rollback", ()),
}
PARTS = ("refusals", "bad", "panic", "hang", "early", "good")  # the run's parts, in order (--only picks some)
SITE = "/opt/mynabox/venv/lib/python3.13/site-packages"  # trixie's Python (the image's venv)
HANG_LINE = "update-test: PID 1 of this slot hangs"
HANG_INIT = (
    "#!/bin/sh\n# update test only: a PID 1 that never starts systemd and never exits (a hang, not a panic)\n"
    f'echo "{HANG_LINE}" > /dev/kmsg\nwhile :; do sleep 3600; done\n'
)
SOFTDOG_RESET = "softdog: Initiating system reboot"
EARLY_LINE = "update-test: the initramfs of this slot hangs before softdog"
EARLY_INIT = (
    "#!/bin/sh\n# update test only: an initramfs whose /init hangs before init-top (softdog not loaded yet)\n"
    f'echo "{EARLY_LINE}"\nwhile :; do sleep 3600; done\n'
)
EARLY_ARMED = "on trial: early watchdog i6300esb armed"


def newc(entries: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A cpio archive in the kernel's initramfs format (newc; Documentation/driver-api/early-userspace):
    (name, mode, data, rdev major, rdev minor) each, then the trailer."""
    out = bytearray()
    for ino, (name, mode, data, major, minor) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0, 0)], 1):
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(raw), 0)
        out += b"070701" + "".join(f"{v:08x}" for v in fields).encode() + raw
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def early_edit(work: Path, root: Path) -> str:
    """The debugfs script that makes root's initramfs hang at its very start: its /init replaced by a
    script that loops, appended as a second archive (the kernel unpacks them in order, a later file
    replacing an earlier one; an uncompressed archive must start 4-byte aligned, zeros between are
    skipped), with a /dev/console to print on."""
    stat = subprocess.run(["debugfs", "-R", "stat /boot/initrd.img", str(root)],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    found = re.search(r'Fast link dest: "([^"]+)"', stat)
    if found is None:
        raise RuntimeError(f"/boot/initrd.img is not a symbolic link in {root}")
    name = found.group(1).rsplit("/", 1)[-1]
    original = work / "early-initrd.orig"
    subprocess.run(
        ["debugfs", "-R", f"dump /boot/{name} {original}", str(root)], check=True, capture_output=True
    )
    data = original.read_bytes()
    if not data:
        raise RuntimeError(f"/boot/{name} is empty in {root}")
    extra = newc([("init", 0o100755, EARLY_INIT.encode(), 0, 0), ("dev", 0o40755, b"", 0, 0),
                  ("dev/console", 0o20600, b"", 5, 1)])  # fmt: skip
    hanging = work / "early-initrd"
    hanging.write_bytes(data + b"\0" * (-len(data) % 4) + extra)
    original.unlink()
    return f"cd /boot\nrm {name}\nwrite {hanging} {name}\n"


def slot_edits(work: Path) -> dict[str, str]:
    """debugfs scripts that turn root A into each broken variant."""
    dropin = work / "90-never-ready.conf"
    dropin.write_text(BAD_DROPIN)
    formats = work / "storage-formats.json"
    formats.write_text('{"outbox": {"schema": 2, "oldest_reader": 2}}\n')
    junk = work / "junk-init"  # systemd, PID 1, replaced: the exec fails, init dies, the kernel panics
    junk.write_bytes(b"not an executable\n" * 64)
    junk.chmod(0o755)
    hang = work / "hang-init"  # systemd, PID 1, replaced: a shell that sleeps for ever
    hang.write_text(HANG_INIT)
    hang.chmod(0o755)  # debugfs's write keeps the host file's mode
    return {
        "bad": f"cd /etc/systemd/system/mynabox.service.d\nwrite {dropin} 90-never-ready.conf\n",
        "newer-outbox": f"cd {SITE}/mynabox/data\nrm {formats.name}\nwrite {formats} {formats.name}\n",
        "panic": f"cd /usr/lib/systemd\nrm systemd\nwrite {junk} systemd\n",
        "hang": f"cd /usr/lib/systemd\nrm systemd\nwrite {hang} systemd\n",
    }


def hang_tries(console: str) -> dict[str, object]:
    """What the console shows of the hanging slot's tries, from its switch on: how many boots of B hung
    (HANG_LINE), how many softdog reset, the kernel's time from softdog's load to its reset in each (the
    `[   12.345678]` stamps of its two lines), and panics (there must be none: a hang, not a panic)."""
    text = plain(console)
    stamp = r"\[\s*(\d+\.\d+)\] "  # not at the line's start: "Begin: Loading essential drivers ... [ …"
    loads = [float(s) for s in re.findall(stamp + r"softdog: initialized\.", text, re.M)]
    fires = [float(s) for s in re.findall(stamp + re.escape(SOFTDOG_RESET), text, re.M)]
    return {
        "hangs": text.count(HANG_LINE),
        "resets": len(fires),
        "load_to_reset_s": [round(f - lo, 1) for lo, f in zip(loads, fires, strict=False)],
        "panics": text.count("Kernel panic"),
    }


def early_tries(console: str) -> dict[str, int]:
    """What the console shows from the early bundle's switch on: B's boots that hung at once, the early
    watchdog armed by B's stage on each, softdog loads (A's boot only: B never got that far) and panics."""
    text = plain(console)
    return {
        "hangs": text.count(EARLY_LINE),
        "armed": text.count(EARLY_ARMED),
        "softdog_loads": len(re.findall(r"softdog: initialized\.", text)),
        "panics": text.count("Kernel panic"),
    }


def make_bundles(
    image: Path,
    work: Path,
    signer: Signer,
    served: Path,
    figures: dict[str, object],
    *,
    names: tuple[str, ...] = ("good", "bad", "panic", "hang", "early", *REFUSED),
    reuse: bool = False,
) -> None:
    """One bundle per name from the test copy's root A: good as it is, the others as slot_edits and
    REFUSED make them (`reuse`: a bundle already in `served` is kept: the same image, a rerun)."""
    root_a = work / "root-a.ext4"
    cut_root_a(image, root_a)
    edits = slot_edits(work)
    if "early" in names:
        edits["early"] = early_edit(work, root_a)
    served.mkdir(exist_ok=True)
    for name in names:
        if reuse and (served / f"{name}.raucb").exists():
            continue
        root = work / f"{name}.ext4"
        shutil.copyfile(root_a, root)
        if name in edits:
            script = work / f"{name}.debugfs"
            script.write_text(edits[name])
            subprocess.run(["debugfs", "-w", "-f", str(script), str(root)], check=True, capture_output=True)
        by = make_signer(work / "stranger", "stranger") if name == "stranger" else signer
        keyring = () if name == "stranger" else ("--keyring", str(signer.ca))
        t0 = time.monotonic()
        subprocess.run(
            [HERE / "make-bundle", "--rootfs", str(root), "--cert", str(by.cert), "--key", str(by.key),
             *keyring, *REFUSED.get(name, ("", ()))[1],
             "--build", f"update-test-{name}", "--out", str(served / f"{name}.raucb")],
            check=True,
        )  # fmt: skip
        figures[f"bundle_{name}_bytes"] = (served / f"{name}.raucb").stat().st_size
        figures[f"bundle_{name}_make_s"] = round(time.monotonic() - t0, 1)
        root.unlink()
    root_a.unlink()


def install_lines(console: str) -> list[str]:
    """`update install`'s own lines in the console's text: a line of its stderr may follow the shell's
    prompt (`root@mynabox:/# install: refused: …`)."""
    return re.findall(r"(?:^|# )(install: .*)$", plain(console), re.M)


def refusals(box: Box, port: int, first: int, figures: dict[str, object]) -> bool:
    """Each REFUSED bundle: refused with its reason, and nothing switched (boot.scr names no slot B and the
    booted slot stays A). Install numbers from `first`."""
    ok = True
    for n, (name, (reason, _args)) in enumerate(REFUSED.items(), start=first):
        t0 = time.monotonic()
        since = start_install(box, f"https://10.0.2.2:{port}/{name}.raucb", n)
        end = box.console.wait(f"@@install-end-{n} rc=", 3600, since)
        said = " | ".join(install_lines(box.console.text(since)))
        figures[f"refused_{name}_s"] = round(time.monotonic() - t0, 1)
        refused = end is not None and "install: refused:" in said and reason in said
        print(f"update-test: {name}: {'refused' if refused else 'NOT REFUSED'}: {said[-300:]}", flush=True)
        ok = ok and refused
    # The newer-outbox bundle was written into B and B marked bad: the idle switch (0.5 min) must not come.
    since = box.console.mark()
    switched = box.console.wait("mynabox: booting slot ", 90, since)
    status = box.sh(f"{MYNABOX} update status 2>&1 | grep -E '^(booted slot|slot )'")
    print("update-test: after the refusals:", " | ".join(ln for ln in status.split("\n") if ln), flush=True)
    return ok and switched is None and "booted slot: A" in status


@contextlib.contextmanager
def update_server(served: Path, cert: Path, key: Path, client_ca: Path) -> Iterator[UpdateServer]:
    """HTTPS on the host (10.0.2.2 from the guest) serving the bundles to a client certificate of the fleet's
    CA only, as the fleet's update server does: range requests (the box's RAUC streams), bytes counted."""
    with UpdateServer(
        served, cert=cert, key=key, client_ca=client_ca, host="0.0.0.0",
        log=lambda line: None if '" 206 ' in line else print("update-test: server:", line, flush=True),
    ) as server:  # fmt: skip
        yield server


def start_install(box: Box, url: str, n: int) -> int:
    """`mynabox update install URL` in the guest, as root, in the background (the shell stays free for a
    tap meanwhile). When it ends, the last lines of its output and `@@install-end-N rc=…` go to the
    console (the box may reboot into the new slot right after, taking /run with it). Returns the console's
    offset before."""
    log = f"/run/mynabox-test-install-{n}.log"
    since = box.console.mark()
    box.sh(
        f"({MYNABOX} update install {url} --ca {IDENTITY}/summary-ca.pem --cert {IDENTITY}/summary-client.pem"
        f" --key {IDENTITY}/credentials/summary-client-key > {log} 2>&1; rc=$?;"
        f" tail -n 4 {log} > /dev/ttyAMA0; "
        f'echo "@@install-end-$(({n}+0)) rc=$rc" > /dev/ttyAMA0) >/dev/null 2>&1 & true'
    )
    return since


def end_install(
    box: Box, n: int, since: int, t0: float, *, figures: dict[str, object], name: str
) -> float | None:
    """Waits for install `n` to end; the moment it ended, or None if it failed."""
    end = box.console.wait(f"@@install-end-{n} rc=", 3600, since)
    done = time.monotonic()
    figures[f"{name}_fetch_and_install_s"] = round(done - t0, 1)
    said = install_lines(box.console.text(since)[: None if end is None else end - since])
    print(f"update-test: install {name}:", " | ".join(said)[-600:], flush=True)
    return done if end is not None and "install: installed" in " ".join(said) else None


def tap(box: Box, bt: ModuleType, reader: VscardCard, key: str) -> dict[str, float] | None:
    """同意 pressed, then the patient's card into the emulated USB reader (as the boot test taps): the
    host's tap → opened at the receiver, and the daemon's own read-timing figures (card_ms,
    present_to_puback_ms, …). None if no summary arrived."""
    since = box.console.mark()
    bt.press(box.console, bt.pin_map()["consent"])
    t_tap = time.monotonic()
    reader.insert(VirtualMyNumberCard(patient(key).card_id))
    drug = patient(key).prescriptions[0].drug_name
    summary = bt.wait_for_summary(box.received, box.receive, 180, drug)
    got = None if summary is None else {"tap_to_receiver_s": round(time.monotonic() - t_tap, 2)}
    time.sleep(1)  # the timing lines follow the PUBACK
    for line in bt.TIMING.findall(box.console.text(since)):
        print("update-test: daemon:", line.strip(), flush=True)
        if got is not None:
            got.update({k: float(v) for k, v in re.findall(r"(\w+_ms)=(-?[\d.]+)", line)})
    reader.remove()
    time.sleep(2)
    return got


def wait_slot(box: Box, slot: str, since: int, timeout: float) -> int | None:
    """Console offset just past boot.scr's line naming `slot`, after `since`."""
    return box.console.wait(f"mynabox: booting slot {slot} ", timeout, since)


def settings_line(config: str, reader: str | None) -> str:
    """The shell line that gives the box's config the update tests' settings and restarts the daemon:
    `[update] idle_min = 0.5` and, with the boot test's `reader` section (taps), `test_mode = true`."""
    taps = "" if reader is None else f"sed -i -e 's/^\\[device\\]$/[device]\\ntest_mode = true/' {config} && "
    return (
        f"{taps}printf '\\n[update]\\nidle_min = 0.5\\n{reader or ''}' >> {config}"
        " && systemctl restart mynabox.service"
    )


def ready_for_updates(
    box: Box, bt: ModuleType | None, who: str, *, timeout: float, step: float, figures: dict[str, object]
) -> bool:
    """Slot A up and marked good by the health check, then the test copy's config (settings_line, with the
    boot test's reader section when `bt` is given: taps), the daemon restarted and READY again. False,
    said and diagnosed, otherwise."""
    console = box.console
    if console.wait(READY, timeout) is None or console.wait(HEALTHY.format(slot="A"), step) is None:
        print(f"{who}: slot A did not come up healthy")
        diagnose(console)
        return False
    figures["first_boot_healthy_s"] = console.elapsed()
    since = console.mark()
    box.sh(settings_line(f"{IDENTITY}/config.toml", None if bt is None else bt.READER))
    if console.wait(READY, step, since) is None:
        print(f"{who}: the daemon did not take the [update] settings")
        diagnose(console)
        return False
    return True


def rolled_back(
    box: Box,
    server: UpdateServer,
    url: str,
    n: int,
    name: str,
    *,
    within: float,
    figures: dict[str, object],
) -> int | None:
    """Installs bundle `name` (install number `n`); the box must switch to B at idle and come back to A by
    itself within `within` s: READY there and A marked good; its figures `{name}_…` into `figures`. The
    console's offset at the switch, or None (said and diagnosed)."""
    console, step = box.console, box.options.step_timeout
    since = console.mark()
    t0 = time.monotonic()
    started = start_install(box, url, n)
    installed = end_install(box, n, started, t0, figures=figures, name=name)
    figures[f"{name}_bytes_sent"] = server.sent(f"{name}.raucb")
    if installed is None:
        return None
    switched = wait_slot(box, "B", since, step)
    t_switch = time.monotonic()
    if switched is None:
        print(f"update-test: no switch to slot B after the {name} bundle")
        diagnose(console)
        return None
    figures[f"{name}_installed_to_switch_s"] = round(t_switch - installed, 1)
    back = wait_slot(box, "A", switched, within)
    if back is None or console.wait(READY, step, back) is None:
        print(f"update-test: the {name} slot did not roll back to A")
        diagnose(console)
        return None
    figures[f"{name}_switch_to_ready_on_a_s"] = round(time.monotonic() - t_switch, 1)
    if console.wait(HEALTHY.format(slot="A"), step, back) is None:
        print(f"update-test: slot A not marked good after the {name} bundle")
        return None
    return switched


def hung_and_back(
    box: Box,
    server: UpdateServer,
    port: int,
    n: int,
    name: str,
    *,
    within: float,
    figures: dict[str, object],
    read: Callable[[str], Mapping[str, object]],
    want: dict[str, object],
    what: str,
    ended_by: str,
) -> bool:
    """A bundle whose slot hangs: installed, switched, rolled back (`rolled_back`); then what `read` finds
    on the console from the switch on must hold every value of `want`. Figures `{name}_…` into `figures`."""
    back = rolled_back(
        box, server, f"https://10.0.2.2:{port}/{name}.raucb", n, name, within=within, figures=figures
    )
    if back is None:
        return False
    seen = read(box.console.text(back))
    figures.update({f"{name}_{k}": v for k, v in seen.items()})
    print(f"update-test: {what}: {json.dumps(seen)}, back on A")
    if any(seen.get(k) != v for k, v in want.items()):
        print(f"update-test: B's three tries were not each a hang ended by {ended_by}")
        return False
    return True


def update_box(
    work: Path,
    *,
    out: Path,
    timeout: float,
    step_timeout: float,
    health_limit_min: float,
    replace: tuple[tuple[Path, str], ...] = (),
    reuse: bool = False,
) -> tuple[Signer, Options]:
    """A test fleet signer in `work` (`reuse`: the one a run before left there, whose bundles are kept), and
    the box's options: its keyring and the health check's limit put into root A before the bundles are cut
    from it (so slot B has them too), room for a fetched bundle."""
    pki = work / "pki"
    kept = Signer(pki / "fleet-signer.pem", pki / "fleet-signer.key", pki / "fleet-ca.pem")
    reusable = reuse and all(path.exists() for path in (kept.cert, kept.key, kept.ca))
    signer = kept if reusable else make_signer(pki, "fleet")
    # The health limit is the root-owned unit's (a drop-in), not the daemon's config.
    health_dropin = work / "90-update-test.conf"
    health_dropin.write_text(f"[Service]\nEnvironment=MYNABOX_HEALTH_LIMIT_S={health_limit_min * 60:.0f}\n")
    options = Options(
        out=out, keep=work, timeout=timeout, step_timeout=step_timeout,
        debugfs=f"cd /etc/rauc\nwrite {signer.ca} keyring.pem\n"
        "mkdir /etc/systemd/system/mynabox-health.service.d\n"
        f"cd /etc/systemd/system/mynabox-health.service.d\nwrite {health_dropin} 90-update-test.conf\n",
        replace=replace,
        extra_card_bytes=1536 * 1024 * 1024,  # room on the state partition for a fetched bundle
    )  # fmt: skip
    return signer, options


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build's output directory")
    parser.add_argument("--keep", type=Path, help="keep the work files (card, bundles, console log) here")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the first boot to READY")
    parser.add_argument("--step-timeout", type=float, default=900.0, help="seconds for each later step")
    parser.add_argument("--health-limit-min", type=float, default=3.0, help="mynabox-health's limit")
    parser.add_argument(
        "--only", action="append", choices=PARTS, default=[],
        help="run this part only (repeat for more): the refusals, the bad bundle's rollback, the panicking"
        " kernel, the hanging PID 1, the initramfs that hangs at once, the good update; all by default",
    )  # fmt: skip
    parser.add_argument(
        "--replace", action="append", default=[], metavar="LOCAL=GUEST",
        help="swap a file of the test copy's root A (and so of both bundles) to try a fix without a rebuild",
    )  # fmt: skip
    parser.add_argument(
        "--reuse-bundles", action="store_true", help="keep the bundles already in --keep's served/ (a rerun)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = args.keep or Path(tempfile.mkdtemp(prefix="mynabox-update-"))
    work.mkdir(parents=True, exist_ok=True)
    signer, options = update_box(
        work,
        out=args.out,
        timeout=args.timeout,
        step_timeout=args.step_timeout,
        health_limit_min=args.health_limit_min,
        replace=tuple((Path(a).resolve(), b) for a, b in (r.split("=", 1) for r in args.replace)),
        reuse=args.reuse_bundles,
    )
    served = work / "served"
    figures: dict[str, object] = {}
    step = args.step_timeout
    parts = tuple(args.only) or PARTS
    ok = False
    bt = boot_test()
    taps: dict[str, dict[str, float] | None] = {}
    taps_during = False
    names = tuple(n for part in parts for n in (tuple(REFUSED) if part == "refusals" else (part,)))

    def on_card(image: Path) -> None:
        make_bundles(image, work, signer, served, figures, names=names, reuse=args.reuse_bundles)

    with launch(options, on_card=on_card) as box:
        console = box.console
        v = box.work / "vehicle" / "summary"
        with update_server(served, v / "server.pem", v / "server.key", v / "ca.pem") as server:
            port = server.port
            if not ready_for_updates(
                box, bt, "update-test", timeout=args.timeout, step=step, figures=figures
            ):
                return 1

            if "refusals" in parts and not refusals(box, port, 10, figures):
                print("update-test: a bundle that must be refused was not, or the box switched")
                diagnose(console)
                return 1

            if "bad" in parts:
                # The bad bundle: installed, switched at idle, never READY on B, back to A by itself.
                url = f"https://10.0.2.2:{port}/bad.raucb"
                within = step + args.health_limit_min * 60
                back = rolled_back(box, server, url, 1, "bad", within=within, figures=figures)
                if back is None:
                    return 1
                print(
                    "update-test: rolled back:", " | ".join(re.findall(r"health: .*", console.text(back))[:4])
                )

            if "panic" in parts:
                # The panicking kernel: switched at idle; each of B's tries panics (init dies); U-Boot
                # boots A.
                url = f"https://10.0.2.2:{port}/panic.raucb"
                back = rolled_back(box, server, url, 3, "panic", within=3 * step, figures=figures)
                if back is None:
                    return 1
                figures["panic_tries_seen"] = console.text(back).count("Kernel panic")
                print(f"update-test: the panicking kernel: {figures['panic_tries_seen']} panics, back on A")

            if "hang" in parts and not hung_and_back(
                # The hanging PID 1: switched at idle; each of B's tries hangs before systemd; softdog (armed
                # by B's own boot stage, loaded by its initramfs) resets it; U-Boot boots A.
                box, server, port, 4, "hang", within=3 * step, figures=figures, read=hang_tries,
                want={"hangs": 3, "resets": 3, "panics": 0},
                what="the hanging PID 1", ended_by="softdog",
            ):  # fmt: skip
                return 1

            if "early" in parts and not hung_and_back(
                # The kernel's own hang: switched at idle; each of B's tries hangs in the initramfs's first
                # line, before softdog loads; the early watchdog B's stage armed on this trial boot (qemu's
                # i6300esb) resets it; U-Boot boots A.
                box, server, port, 5, "early", within=3 * step, figures=figures, read=early_tries,
                want={"hangs": 3, "armed": 3, "softdog_loads": 1, "panics": 0},
                what="the initramfs that hangs at once", ended_by="the early watchdog",
            ):  # fmt: skip
                return 1

            if "good" in parts:
                # The good bundle: a tap at idle, then the install with a tap while RAUC writes slot B; then
                # switched at idle, READY on B, marked good.
                reader = VscardCard(
                    VirtualMyNumberCard(patient("healthy").card_id), port=box.ccid_port
                ).connect()
                try:
                    taps["idle"] = tap(box, bt, reader, "healthy")
                    # A press while a result is shown is ignored (the state machine's rule 4): the next tap
                    # waits until the idle tap's result has cleared (result_clear_s, 60 s by default).
                    not_before = time.monotonic() + 65.0
                    t0 = time.monotonic()
                    since = start_install(box, f"https://10.0.2.2:{port}/good.raucb", 2)
                    writing = console.wait(WRITING, step, since)
                    time.sleep(max(0.0, not_before - time.monotonic()))
                    if writing is not None:
                        taps["install"] = tap(box, bt, reader, "warfarin-elderly")
                        taps_during = WRITTEN not in console.text(writing)
                finally:
                    reader.close()
                for when, got in taps.items():
                    print(f"update-test: tap at {when}:", json.dumps(got), flush=True)
                print("update-test: the install's tap delivered while RAUC still wrote slot B:", taps_during)
                if end_install(box, 2, since, t0, figures=figures, name="good") is None:
                    return 1
                figures["good_bytes_sent"] = server.sent("good.raucb")
                switched = wait_slot(box, "B", since, step)
                t_switch = time.monotonic()
                ready_b = None if switched is None else console.wait(READY, step, switched)
                if ready_b is None:
                    print("update-test: slot B did not come up with the good bundle")
                    diagnose(console)
                    return 1
                figures["good_switch_to_ready_s"] = round(time.monotonic() - t_switch, 1)
                # B's trial boot: its stage armed the early watchdog, its first try came up (the i6300esb's
                # driver stopped that timer, softdog armed before it): one boot of B, no reset.
                since_install = plain(console.text(since))
                figures["good_trial_armed"] = since_install.count(EARLY_ARMED)
                figures["good_boots_of_b"] = since_install.count("mynabox: booting slot B ")
                if (figures["good_trial_armed"], figures["good_boots_of_b"]) != (1, 1):
                    print("update-test: the good bundle's trial boot was not one armed boot of B")
                    ok_trial = False
                else:
                    ok_trial = True
                t_ready = time.monotonic()
                if console.wait(HEALTHY.format(slot="B"), step, ready_b) is None:
                    print("update-test: slot B not marked good")
                    diagnose(console)
                    return 1
                figures["good_ready_to_marked_good_s"] = round(time.monotonic() - t_ready, 1)
                status = box.sh(f"{MYNABOX} update status 2>&1 | grep -E '^(booted slot|rauc booted|slot )'")
                print(
                    "update-test: mynabox update status:", " | ".join(ln for ln in status.split("\n") if ln)
                )
                ok = ok_trial and "booted slot: B" in status and all(taps.get(w) for w in ("idle", "install"))

            if "good" not in parts:
                ok = True
    for when, got in taps.items():
        figures.update({f"tap_{when}_{k}": v for k, v in (got or {}).items()})
    print(json.dumps({**box.figures, **figures}))
    return exit_code(ok, work, args.keep)


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
