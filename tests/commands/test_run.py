"""`mynabox run` as a real subprocess with unusable config or identity files: it exits 78 (EX_CONFIG, which
the unit's RestartPreventExitStatus= names) at once, with the problem named and no traceback — instead of a
traceback at start that systemd's Restart=always would repeat forever."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mynabox.adapters.keyfiles import CREDENTIALS_ENV
from mynabox.cli import EXIT_CONFIG
from support.boxfiles import DAEMON_EXTRA, VALID, credentials_env, make_box, write_config


def run_daemon(config: Path | str, box: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in (CREDENTIALS_ENV, "MYNABOX_CONFIG", "NOTIFY_SOCKET")
    }
    return subprocess.run(
        [sys.executable, "-m", "mynabox.cli", "run", "--config", str(config)],
        env={**env, **credentials_env(box)},
        capture_output=True,
        text=True,
        timeout=60,  # a daemon that started would run until killed here: the test fails, it does not hang
        check=False,
    )


@pytest.fixture
def box(tmp_path: Path) -> Path:
    return make_box(tmp_path)


def garbage_ca(box: Path) -> str:
    (box / "ca.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    return f"summary.ca_file: {box / 'ca.pem'}: not a CA certificate bundle in PEM"


def garbage_cert(box: Path) -> str:
    (box / "client.pem").write_bytes(os.urandom(2000))
    return f"mqtt.client_cert: {box / 'client.pem'}: not a certificate in PEM"


def garbage_key(box: Path) -> str:
    key = box / "creds" / "mqtt-client-key"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    return f"mqtt.client_key: {key}: not an unencrypted PEM private key"


def huge_ca(box: Path) -> str:
    with (box / "ca.pem").open("r+b") as f:
        f.truncate(1 << 30)
    return f"summary.ca_file: {box / 'ca.pem'}: too large for a CA certificate bundle"


def fifo_key(box: Path) -> str:
    key = box / "creds" / "device-key"
    key.unlink()
    os.mkfifo(key, 0o600)
    return f"sealing.device_key: {key}: a FIFO, not a regular file"


def readable_key(box: Path) -> str:
    key = box / "creds" / "audit-key"
    key.chmod(0o644)
    return f"audit.key: {key}: mode 0644 lets other users read it"


@pytest.mark.parametrize(
    "spoil",
    [garbage_ca, garbage_cert, garbage_key, huge_ca, fifo_key, readable_key],
    ids=lambda f: f.__name__,
)
def test_unusable_identity_files_exit_78_with_a_clear_message(
    box: Path, spoil: Callable[[Path], str]
) -> None:
    expected = spoil(box)
    done = run_daemon(write_config(box, VALID + DAEMON_EXTRA), box)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert expected in done.stderr, done.stderr
    assert not (box / "state").exists()  # refused before anything started


def test_unreadable_config_exits_78(box: Path) -> None:
    done = run_daemon("/dev/zero", box)
    assert (done.returncode, "Traceback" in done.stderr) == (EXIT_CONFIG, False), done.stderr
    assert "/dev/zero: 1 problem(s)\n  <file>: a character device, not a regular file" in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            VALID.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nport = ' + "9" * 5000),
            "<toml>: a number too long to convert (more than 4300 digits)",
        ),
        (
            VALID.replace('ca_file = "ca.pem"', 'ca_file = "c\\u0000a.pem"', 1),
            "summary.ca_file: holds a control character (e.g. NUL): not a usable path",
        ),
    ],
    ids=["long-integer", "nul-in-path"],
)
def test_a_long_integer_or_a_nul_path_exits_78(box: Path, text: str, expected: str) -> None:
    # Issue 23 item 5: these were a traceback and exit 1, restarted every second by Restart=always.
    done = run_daemon(write_config(box, text + DAEMON_EXTRA), box)
    assert (done.returncode, "Traceback" in done.stderr) == (EXIT_CONFIG, False), done.stderr
    assert expected in done.stderr, done.stderr
    assert not (box / "state").exists()
