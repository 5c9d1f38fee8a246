"""`mynabox receive --forget-device` as a real subprocess: it retires the key a box signed with (issue 23
item 6), so the box's messages, replays included, stay refused; it no longer drops the numbers."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from joserfc.jwk import ECKey

from mynabox.adapters.keyfiles import save_private_key, save_public_key
from mynabox.gateway.store import SeenStore
from mynabox.payload.keys import generate_device_key

DEV = "amb-tokyo-01"
KEY = "DUBpRCeGU2VaWW6L1rRf4BI4jVbiJROkx2o8GogZeh4"  # a thumbprint as Opened.key holds it


def forget(state: Path, device: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mynabox.cli",
            "receive",
            "--forget-device",
            device,
            "--state-dir",
            f"{state}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_forget_device_retires_the_key_and_keeps_the_numbers(tmp_path: Path) -> None:
    store = SeenStore(tmp_path / "receiver-seen.sqlite3")
    store.remember("a" * 32, DEV, now=datetime.now(UTC), seq=7, key=KEY)
    store.close()

    done = forget(tmp_path, DEV)
    assert done.returncode == 0, done.stderr
    assert f"retired the key of {DEV} (thumbprint {KEY})" in done.stdout
    store = SeenStore(tmp_path / "receiver-seen.sqlite3")
    try:
        assert store.retired(KEY)
        assert store.highest(DEV) == 7  # kept: a replay of the old life is still stale by number
        assert store.check_sequence(DEV, 8, "b" * 32, KEY) == "key-retired"
    finally:
        store.close()

    unknown = forget(tmp_path, "amb-other-02")
    assert unknown.returncode == 0 and "no key recorded for amb-other-02" in unknown.stdout


def test_the_receiver_names_a_device_whose_installed_key_is_retired(tmp_path: Path) -> None:
    """Every message of that device would be refused: the operator hears it once, at start."""
    gateway_key, device_key = generate_device_key(), generate_device_key()
    save_private_key(tmp_path / "gateway.key", gateway_key)
    (tmp_path / "devices").mkdir()
    save_public_key(tmp_path / "devices" / f"{DEV}.pem", device_key)
    thumbprint = ECKey.import_key(device_key.public_key()).thumbprint()
    store = SeenStore(tmp_path / "receiver-seen.sqlite3")
    store.remember("a" * 32, DEV, now=datetime.now(UTC), seq=1, key=thumbprint)
    assert store.forget_device(DEV, now=datetime.now(UTC)) == thumbprint
    store.close()
    missing = tmp_path / "no-such-tls-file"  # the receiver stops there, after its start-up checks
    done = subprocess.run(
        [
            *(sys.executable, "-m", "mynabox.cli", "receive", "--broker", "127.0.0.1:1"),
            *("--ca", f"{missing}", "--cert", f"{missing}", "--key", f"{missing}"),
            *("--gateway-key", f"{tmp_path / 'gateway.key'}", "--device-keys", f"{tmp_path / 'devices'}"),
            *("--state-dir", f"{tmp_path}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"the key of {DEV} is retired (--forget-device)" in done.stderr
