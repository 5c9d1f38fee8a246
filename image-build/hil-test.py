"""`make image-hil`: the bench suite (`make hil`, tests/hil) run ON the emulated box, so the bench procedure
is proven on the image before a technician meets it.

The box is the boot test's (image-build/vmbox.py: the image's test copy under qemu, the host's broker and
reference summary service, qemu's usb-ccid reader, gpio-sim's chip shaped like the Pi 3 B+'s, i2c-stub's
bus with no display on it). Once it is READY, as hw/bench/README.md says: the daemon is stopped, the suite
is put on the box (the test copy only, in /run: pytest, the test kit, tests/hil, scripts/hil.py, the rig
file hw/bench/emulated.toml with the host's ports, the bench gateway's files), and `scripts/hil.py` runs
there with its terminal bridged to the host (tests/hil/ttybridge.py). The host is the technician
(tests/hil/emulated.py): it acts on each prompt for real (cards in and out of the usb-ccid reader, the
buttons pulled on gpio-sim as the board is wired) and answers from what it saw (the LED's and buzzer's
lines, streamed by tests/hil/linewatch.py).

Two runs: the rig as it is (every check must pass, the OLED's and the watchdog's skipped with the rig's
reason), then the button checks with a rig whose pin map swaps 同意 and 緊急, which must fail
"button 同意: press seen" and "button 緊急: press seen" (the answers come from the actions, not a script).
The reports land in <work>/hil-reports/<run>/. Run as root with the project's venv:
  .venv/bin/python image-build/hil-test.py [--out DIR] [--keep DIR] [--modules DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import io
import json
import re
import signal
import socket
import sys
import tarfile
import threading
import tomllib
from pathlib import Path
from typing import Any

from mynabox.adapters.panel import TONES
from mynabox_testkit.mynacard import Faults, VirtualMyNumberCard
from mynabox_testkit.patients import card_id_for
from mynabox_testkit.ports import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from vmbox import DEVICE_ID, SIM, Box, Options, boot_test, exit_code, launch

from hil.emulated import EmulatedTechnician, Levels, Session, run_session
from support.vscard import VscardCard

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GUEST = "/run/hil"  # tmpfs: the root is read-only, and nothing of this stays on the card
PY = "/opt/mynabox/venv/bin/python"  # the box's own Python and firmware
HOST = "10.0.2.2"  # the host as qemu's user network shows it to the guest
# pytest and what it needs (its Requires-Dist on Python 3.11+), all pure Python, from the project's venv
SITE = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py.py", "pytest_timeout.py")
# their metadata too: pytest finds its plugins (pytest-timeout) by their entry points
DISTS = {"pytest", "pluggy", "iniconfig", "packaging", "pygments", "pytesttimeout"}
EMULATED = ROOT / "hw/bench/emulated.toml"
AS_THE_DAEMON = "-p User=mynabox -p Group=mynabox -p 'SupplementaryGroups=i2c gpio' " + " ".join(
    f"-p LoadCredential={c}:/etc/mynabox/credentials/{c}"
    for c in ("device-key", "mqtt-client-key", "summary-client-key", "audit-key")
)  # mynabox.service's
BUTTONS = ("button 同意: press seen", "button 緊急: press seen")


def rig_text(box: Box, pins_file: str | None = None) -> str:
    """hw/bench/emulated.toml with the host's ports (as the box's config names them) and a pin map."""
    vehicle = tomllib.loads((box.work / "vehicle" / "vehicle.toml").read_text())
    text = EMULATED.read_text(encoding="utf-8")
    for key, value in (
        ("broker", f"{vehicle['mqtt']['host']}:{vehicle['mqtt']['port']}"),
        ("summary_url", vehicle["summary"]["url"]),
    ):
        text, n = re.subn(rf'^{key} = "[^"]*"', f'{key} = "{value}"', text, flags=re.M)
        assert n == 1, key
    if pins_file is not None:
        text += f'\n[pins]\nfile = "{pins_file}"\n'
    return text


def swapped_pins() -> str:
    """The packaged pin map with 同意 and 緊急 swapped: a rig that believes the buttons are the other way."""
    text = (ROOT / "firmware/mynabox/data/pins.toml").read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    consent, emergency = doc["buttons"]["consent"], doc["buttons"]["emergency"]
    text, n = re.subn(r"^consent = .*$", f"consent = {json.dumps(emergency)}", text, flags=re.M)
    text, m = re.subn(r"^emergency = .*$", f"emergency = {json.dumps(consent)}", text, flags=re.M)
    assert n == m == 1, "pins.toml: one consent and one emergency line"
    return text


def kit(box: Box) -> bytes:
    """The suite for the box, as a tar.gz: pytest and its plugins' pure-Python packages from this venv, the
    test kit, tests/hil, scripts/hil.py, the project's pytest settings, the rig files and the bench
    gateway's files (the test vehicle's: its CA, the gateway's client certificate, envelope key, the box's
    public key)."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    buf = io.BytesIO()

    def add_tree(src: Path, name: str) -> None:
        tar.add(src, name, filter=lambda i: None if "__pycache__" in i.name or i.name.endswith(".pyc") else i)

    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for entry in SITE:
            if (site / entry).exists():
                add_tree(site / entry, f"site/{entry}")
        for dist in site.glob("*.dist-info"):
            if dist.name.split("-")[0].lower().replace("_", "") in DISTS:
                add_tree(dist, f"site/{dist.name}")
        add_tree(ROOT / "testkit/mynabox_testkit", "site/mynabox_testkit")
        add_tree(ROOT / "tests/hil", "src/tests/hil")
        for name in ("pyproject.toml", "scripts/hil.py", "hw/bench/emulated.toml"):
            tar.add(ROOT / name, f"src/{name}")
        mqtt = box.work / "vehicle" / "mqtt"
        for src, name in (
            (mqtt / "ca.pem", "ca.pem"),
            (mqtt / "client-gateway.pem", "gateway.pem"),
            (mqtt / "client-gateway.key", "gateway.key"),
            (box.work / "gateway.key", "gateway-envelope.key"),
            (box.work / "device-keys" / f"{DEVICE_ID}.pem", f"device-keys/{DEVICE_ID}.pem"),
        ):
            tar.add(src, f"bench/{name}")
        for name, text in (
            ("rig.toml", rig_text(box)),
            ("rig-swapped.toml", rig_text(box, f"{GUEST}/pins-swapped.toml")),
            ("pins-swapped.toml", swapped_pins()),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Serve(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the base class's names
        pass


class GuestHands:
    """The technician's hands on the emulated box: gpio-sim's pulls in the guest, the usb-ccid slot."""

    def __init__(self, box: Box, reader: VscardCard) -> None:
        self.box = box
        self.reader = reader
        self.cards = {
            # qemu 7.2's usb-ccid drops reader-to-host messages over 384 bytes (boot-test.py's READER note):
            # the cards answer short reads only, as a reader without extended APDUs would make them.
            "test": VirtualMyNumberCard(card_id_for("warfarin-elderly"), extended=False),
            "other": VirtualMyNumberCard("HILOTHERCARD", extended=False, faults=Faults(non_jpki=True)),
        }

    def press(self, line: int, hold_s: float) -> None:
        self.hold((line,), hold_s)

    def hold(self, lines: tuple[int, ...], hold_s: float) -> None:
        down = "; ".join(f"echo pull-down > {SIM}/sim_gpio{n}/pull" for n in lines)
        up = "; ".join(f"echo pull-up > {SIM}/sim_gpio{n}/pull" for n in lines)
        self.box.sh(f"{down}; sleep {hold_s:g}; {up}")

    def insert(self, card: str) -> None:
        self.reader.insert(self.cards[card])

    def remove(self) -> None:
        self.reader.remove()


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.settimeout(300)  # the guest's Python starts slowly under TCG
    return sock


def run_suite(box: Box, technician: EmulatedTechnician, name: str, rig: str, select: str | None) -> Session:
    """`scripts/hil.py` on the box with its terminal bridged to the host; the host answers its prompts."""
    reports = f"{GUEST}/reports/{name}"
    with listener() as server:
        port = server.getsockname()[1]
        send = " ".join(f"--send {reports}/{f}" for f in ("report.json", "report.html", "report.xml"))
        extra = f" -- -k '{select}'" if select else ""
        # As the daemon runs (hw/bench/README.md): its user and groups, its credentials; the config on the
        # state partition is the mynabox user's, and the config loader refuses it to anyone else but root,
        # whom it refuses a file another user could replace.
        box.sh(
            # all of it the daemon user's: lgpio writes its FIFOs into the working directory (src)
            f"mkdir -p {reports} && chown -R mynabox:mynabox {GUEST} && "
            f"systemd-run --unit=mynabox-hil-{name} --collect --quiet {AS_THE_DAEMON} "
            f"-p WorkingDirectory={GUEST}/src -E PYTHONPATH={GUEST}/site {PY} tests/hil/ttybridge.py {HOST} "
            f"{port} {send} -- {PY} scripts/hil.py --rig {GUEST}/{rig} --reports {reports}{extra}"
        )
        conn, _ = server.accept()
    with conn:
        session = run_session(conn, technician.answer, box.work / f"hil-{name}.log", timeout_s=1800)
    out = box.work / "hil-reports" / name
    out.mkdir(parents=True, exist_ok=True)
    for file, data in session.files.items():
        (out / file).write_bytes(data)
    print(f"hil-test: {name}: exit {session.exit_code}, {len(session.prompts)} prompts, reports in {out}")
    return session


def checks(session: Session) -> dict[str, tuple[str, str | None]]:
    report = json.loads(session.files.get("report.json") or b"{}")
    for test in report.get("tests", []):
        said = test.get("proved") or test["name"]
        print(
            f"hil-test:   {test['outcome'].upper():7} {said}"
            + (f": {test['reason']}" if test["reason"] else "")
        )
    for m in report.get("measurements", []):
        print(f"hil-test:   {m['name']} {m['value']:g} {m['unit']}, limit {m.get('limit')}: {m['outcome']}")
    return {t["name"]: (t["outcome"], t["reason"]) for t in report.get("tests", [])}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "out", help="the build's output directory")
    parser.add_argument("--keep", type=Path, help="keep the work files (image, console log, reports) here")
    parser.add_argument("--modules", type=Path, help="gpiosim.ko and i2c-stub.ko for the image's kernel")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for READY")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bt = boot_test()
    options = Options(
        out=args.out, keep=args.keep, oled="ssd1306", modules=args.modules, timeout=args.timeout
    )
    ok = False
    with launch(options) as box, contextlib.ExitStack() as stack:
        if not bt.check_ready(box):
            return 1
        # hw/bench/README.md, step 1: the daemon would hold the reader and the pins.
        box.sh("systemctl stop mynabox.service")
        state = box.sh("echo daemon=$(systemctl is-active mynabox.service)")
        print("hil-test:", " ".join(re.findall(r"^daemon=\S+", state, re.M)[-1:]))
        # The suite's gateway side logs in with the gateway's certificate, whose session the host's receiver
        # holds (the broker makes the certificate's name the client id): the receiver steps aside.
        box.receive.terminate()
        served = box.work / "hil-kit"
        served.mkdir(exist_ok=True)
        (served / "kit.tar.gz").write_bytes(kit(box))
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", free_port()), functools.partial(Serve, directory=str(served))
        )
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        stack.callback(httpd.shutdown)
        got = box.sh(
            f'mkdir -p {GUEST} && cd {GUEST} && {PY} -c "import urllib.request as u; '
            f"u.urlretrieve('http://{HOST}:{httpd.server_address[1]}/kit.tar.gz', 'kit.tar.gz')\" "
            "&& tar xzf kit.tar.gz && echo kit=$(ls src/tests/hil | wc -l)"
        )
        print(
            "hil-test: the suite on the box:", " ".join(re.findall(r"^kit=\S+", got, re.M)[-1:]) or got[-500:]
        )

        wiring = bt.pin_map()  # the board as wired: the packaged pin map (the gpio-sim chip's offsets)
        levels = Levels()
        with listener() as server:
            box.sh(
                f"(setsid {PY} {GUEST}/src/tests/hil/linewatch.py {HOST} {server.getsockname()[1]} "
                f"{SIM}/sim_gpio{wiring['led']}/value {SIM}/sim_gpio{wiring['buzzer']}/value "
                "> /dev/null 2>&1 < /dev/null &)"  # a subshell: box.sh appends "; echo …"
            )
            watch, _ = server.accept()
        stack.callback(watch.close)
        threading.Thread(target=levels.feed, args=(watch,), daemon=True).start()
        hands = GuestHands(box, VscardCard(VirtualMyNumberCard("HILREADER"), port=box.ccid_port).connect())
        stack.callback(hands.reader.close)
        rig = tomllib.loads(EMULATED.read_text(encoding="utf-8"))
        technician = EmulatedTechnician(
            hands,
            levels,
            wiring,
            {tone.value: spec for tone, spec in TONES.items()},
            rig["reader"]["test_card"],
            rig["reader"]["other_card"],
        )

        good = run_suite(box, technician, "emulated", "rig.toml", None)
        seen = checks(good)
        report = json.loads(good.files.get("report.json") or b"{}")
        passed = good.exit_code == 0 and report.get("outcome") == "pass"
        ok = box.check(
            "hil_emulated_pass_s", passed and all(o in ("passed", "skipped") for o, _ in seen.values())
        )
        for action in technician.actions:
            print("hil-test: technician:", action)
        technician.actions.clear()

        swapped = run_suite(box, technician, "emulated-swapped-pins", "rig-swapped.toml", "button")
        seen = checks(swapped)
        caught = swapped.exit_code == 1 and all(
            seen.get(b, ("", None))[0] == "failed" and "swapped" in (seen[b][1] or "") for b in BUTTONS
        )
        ok = box.check("hil_swapped_pins_fail_s", caught) and ok
    print(json.dumps(box.figures))
    return exit_code(ok, box.work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
