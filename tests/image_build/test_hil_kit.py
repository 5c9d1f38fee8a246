"""What image-build/hil-test.py puts on the emulated box for the bench suite, built here from a test
vehicle's files: the suite collects from the unpacked kit alone (its pytest, test kit and tests/hil), the
rig carries the host's ports, and the swapped rig's pin map has 同意 and 緊急 the other way round."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

from mynabox.adapters.panel import load_pin_map
from mynabox_testkit.tlsfiles import make_test_pki

from .scripts import load


def hil_test() -> ModuleType:
    return load("hil-test")


def test_the_kit_collects_the_suite_and_carries_the_rigs(tmp_path: Path) -> None:
    ht = hil_test()
    work = tmp_path / "work"
    make_test_pki(work / "vehicle" / "mqtt", clients=(ht.DEVICE_ID, "gateway"))
    (work / "vehicle" / "vehicle.toml").write_text(
        '[mqtt]\nhost = "10.0.2.2"\nport = 41234\n[summary]\nurl = "https://10.0.2.2:41235"\n'
    )
    (work / "gateway.key").write_text("envelope key")
    (work / "device-keys").mkdir()
    (work / "device-keys" / f"{ht.DEVICE_ID}.pem").write_text("public key")
    with tarfile.open(fileobj=io.BytesIO(ht.kit(SimpleNamespace(work=work)))) as tar:
        tar.extractall(tmp_path / "run", filter="data")
    run = tmp_path / "run"
    assert (run / "bench" / "device-keys" / f"{ht.DEVICE_ID}.pem").read_text() == "public key"
    rig = (run / "rig.toml").read_text()
    assert 'broker = "10.0.2.2:41234"' in rig and 'summary_url = "https://10.0.2.2:41235"' in rig
    swapped = (run / "rig-swapped.toml").read_text()
    assert swapped.endswith('[pins]\nfile = "/run/hil/pins-swapped.toml"\n')
    pins, packaged = load_pin_map(run / "pins-swapped.toml"), load_pin_map(None)
    assert (pins.consent, pins.emergency) == (packaged.emergency, packaged.consent)
    assert (pins.led, pins.buzzer) == (packaged.led, packaged.buzzer)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYNABOX_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "scripts/hil.py", "--rig", str(run / "rig.toml"), "--reports", str(tmp_path / "r"),
         "--", "--collect-only", "-q"],
        cwd=run / "src", env=env | {"PYTHONPATH": str(run / "site")}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "test_panel.py::test_panel" in done.stdout and "test_reader.py::test_reader_found" in done.stdout
