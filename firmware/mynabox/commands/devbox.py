"""`mynabox devbox --dir DIR`: a box to point a gateway at, kept running until Ctrl-C / SIGTERM.

The real daemon (`mynabox run`, a subprocess) with its virtual reader (a private pcscd with vpcd), the
reference summary service and a mosquitto on loopback with the settings of docs/gateway/mosquitto.conf and
acl (TLS, client certificates, the ACL, the retain plugin). The gateway's side is written to ``DIR/gateway``:
the broker's CA, the gateway's client certificate and key (CN ``gateway``), the envelope private key, and the
box's public key as ``devices/<device id>.pem`` - what `mynabox receive` or your own gateway needs.
``DIR/devbox.json`` says where everything is; `mynabox vcard tap PATIENT --dir DIR` taps a synthetic patient.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STATE_FILE = "devbox.json"
READY_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, help="where the gateway's files and the box live")
    parser.add_argument("--device-id", default="amb-dev-01", help="the box's device id (default amb-dev-01)")


def _copy(source: Path, target: Path, mode: int) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)
    return str(target)


def _ready(notify: socket.socket, daemon: subprocess.Popen[bytes], stop: threading.Event) -> bool:
    """Wait up to READY_TIMEOUT_S for READY=1 from the daemon, while it runs and nobody stopped us."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    notify.settimeout(0.5)
    while time.monotonic() < deadline and daemon.poll() is None and not stop.is_set():
        try:
            if b"READY=1" in notify.recv(4096).split(b"\n"):
                return True
        except TimeoutError:
            continue
    return False


def run(args: argparse.Namespace) -> int:
    from mynabox.payload.envelope import is_device_id
    from mynabox_testkit.stack import BoxStack

    if not is_device_id(args.device_id):
        print("mynabox devbox: --device-id must be lowercase letters, digits and '-'", file=sys.stderr)
        return 2
    base: Path = args.dir.resolve()
    if (base / STATE_FILE).exists():
        print(f"mynabox devbox: {base / STATE_FILE} exists: a devbox runs there (or died: remove it)")
        return 2
    base.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack_dir = base / "stack"
    shutil.rmtree(stack_dir, ignore_errors=True)
    stack_dir.mkdir(mode=0o700)
    # Consent "oral" by default: a tap delivers without a button press on the virtual panel.
    with BoxStack(
        device_id=args.device_id, consent_default="oral", result_clear_s=5, workdir=stack_dir
    ) as stack:
        kit, broker, pcscd = stack.kit, stack.broker, stack.pcscd
        assert kit is not None and broker is not None and pcscd is not None
        gw_dir = base / "gateway"
        shutil.rmtree(gw_dir, ignore_errors=True)
        gw_tls = kit.pki.client(kit.gateway)
        files = {
            "ca": _copy(kit.pki.ca_cert, gw_dir / "ca.pem", 0o644),
            "cert": _copy(gw_tls.cert, gw_dir / "gateway.pem", 0o644),
            "key": _copy(gw_tls.key, gw_dir / "gateway.key", 0o600),
            "gateway_key": _copy(kit.gateway_key_file, gw_dir / "gateway-envelope-key.pem", 0o600),
            "device_keys": str(gw_dir / "devices"),
        }
        _copy(
            kit.device_keys_dir / f"{args.device_id}.pem", gw_dir / "devices" / f"{args.device_id}.pem", 0o644
        )
        log_path = base / "box.log"
        notify_dir = Path(tempfile.mkdtemp(prefix="mynabox-devbox-"))  # a socket path has at most 107 bytes
        notify_path = notify_dir / "notify.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        env = dict(os.environ, **stack.env(), NOTIFY_SOCKET=str(notify_path))
        env.pop("WATCHDOG_USEC", None)
        with log_path.open("ab") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "mynabox.cli", "run", "--config", str(stack.config_path)],
                env=env,
                stdout=log,
                stderr=log,
            )
        try:
            if not _ready(notify, daemon, stop):  # as systemd would: the box says READY=1 (sd_notify)
                print(f"mynabox devbox: the box did not get ready; see {log_path}", file=sys.stderr)
                return 1
            state = {
                "device_id": args.device_id,
                "broker": {"host": "127.0.0.1", "port": broker.port},
                "vpcd_port": pcscd.vpcd_port,
                "gateway": files,
                "box_log": str(log_path),
                "pid": os.getpid(),
            }
            (base / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
            receive = " ".join(
                (
                    f"mynabox receive --broker 127.0.0.1:{broker.port} --ca {files['ca']}",
                    f"--cert {files['cert']} --key {files['key']} --gateway-key {files['gateway_key']}",
                    f"--device-keys {files['device_keys']} --state-dir {base / 'receiver'}",
                )
            )
            print(
                f"mynabox devbox: box {args.device_id} running\n"
                f"  broker   127.0.0.1:{broker.port} (MQTT 5 over TLS, client certificate; docs/gateway/)\n"
                f"  gateway  {gw_dir}/ (ca.pem, gateway.pem + gateway.key: CN gateway,"
                f" gateway-envelope-key.pem, devices/{args.device_id}.pem)\n"
                f"  receive  {receive}\n"
                f"  tap      mynabox vcard tap warfarin-elderly --dir {base}\n"
                f"  box log  {log_path}\n"
                "Subscribe first (persistent session), then tap. Stop with Ctrl-C.",
                flush=True,
            )
            while not stop.wait(0.5):
                if daemon.poll() is not None:
                    print(
                        f"mynabox devbox: the box exited ({daemon.returncode}); see {log_path}",
                        file=sys.stderr,
                    )
                    return 1
        finally:
            (base / STATE_FILE).unlink(missing_ok=True)
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(15)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
            notify.close()  # after the daemon: it says STOPPING=1 on its way out
            shutil.rmtree(notify_dir, ignore_errors=True)
    print("mynabox devbox: stopped", flush=True)
    return 0
