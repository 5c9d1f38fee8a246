"""`mynabox devbox` as an integrator runs it: start it, subscribe with the credentials it wrote (here with
`mynabox receive`), tap a synthetic patient with `mynabox vcard tap`, receive the summary with its flags,
stop it: every process and port it started is gone."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from support.wait import wait_for

pytestmark = pytest.mark.stack
MYNABOX = str(Path(sys.executable).with_name("mynabox"))


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_devbox_start_tap_receive_stop(tmp_path: Path) -> None:
    base = tmp_path / "devbox"
    out = (tmp_path / "devbox.out").open("wb")
    devbox = subprocess.Popen([MYNABOX, "devbox", "--dir", str(base)], stdout=out, stderr=subprocess.STDOUT)
    receiver: subprocess.Popen[bytes] | None = None
    try:
        assert wait_for((base / "devbox.json").exists, 60), (tmp_path / "devbox.out").read_text()
        state = json.loads((base / "devbox.json").read_text())
        port = state["broker"]["port"]
        printed = (tmp_path / "devbox.out").read_text()
        assert f"127.0.0.1:{port}" in printed and "mynabox vcard tap" in printed
        gw = state["gateway"]
        assert {Path(gw[k]).name for k in ("ca", "cert", "key", "gateway_key")} == {
            "ca.pem",
            "gateway.pem",
            "gateway.key",
            "gateway-envelope-key.pem",
        }
        assert oct(Path(gw["key"]).stat().st_mode & 0o777) == "0o600"
        # The integrator's gateway: only the written files, subscribed before the tap.
        received = tmp_path / "received"
        receiver = subprocess.Popen(
            [
                MYNABOX,
                "receive",
                *(
                    "--broker",
                    f"127.0.0.1:{port}",
                    "--ca",
                    gw["ca"],
                    "--cert",
                    gw["cert"],
                    "--key",
                    gw["key"],
                ),
                *("--gateway-key", gw["gateway_key"], "--device-keys", gw["device_keys"]),
                *("--state-dir", str(tmp_path / "gw-state"), "--json-out", str(received)),
                *("--fhir-out", str(tmp_path / "fhir")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        tapped = subprocess.run(
            [MYNABOX, "vcard", "tap", "warfarin-elderly", "--dir", str(base)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert tapped.returncode == 0 and "tapped warfarin-elderly" in tapped.stdout, tapped
        device_dir = received / state["device_id"]
        assert wait_for(lambda: len(list(device_dir.glob("*.json"))) >= 2, 30)  # the summary and its audit
        bodies = [json.loads(p.read_text()) for p in device_dir.glob("*.json")]
        summary = next(b for b in bodies if b["kind"] == "summary")
        audit = next(b for b in bodies if b["kind"] == "audit")
        assert [f["code"] for f in summary["body"]["flags"]] == audit["body"]["shown"] == ["anticoagulant"]
        assert audit["body"]["record"]["message"] == summary["message_id"]
        # The hospital's copy: the summary as a FHIR R4 Bundle, with the flag.
        fhir = tmp_path / "fhir" / state["device_id"] / f"{summary['message_id']}.fhir.json"
        assert wait_for(fhir.exists, 10)
        bundle = Bundle.model_validate_json(fhir.read_bytes())
        assert any(e.resource.get_resource_type() == "Flag" for e in bundle.entry or [])
    finally:
        if receiver is not None:
            receiver.send_signal(signal.SIGTERM)
            receiver.communicate(timeout=15)
        devbox.send_signal(signal.SIGTERM)
        code = devbox.wait(timeout=60)
        out.close()
    assert code == 0, (tmp_path / "devbox.out").read_text()
    assert "mynabox devbox: stopped" in (tmp_path / "devbox.out").read_text()
    assert not (base / "devbox.json").exists()
    assert not _port_open(port)  # the broker is gone
    leftovers = subprocess.run(["pgrep", "-f", str(base)], capture_output=True, text=True, check=False)
    assert leftovers.stdout == ""  # no daemon, pcscd or service left behind
