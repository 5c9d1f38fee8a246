"""`mynabox selftest` run as root (as on the box) leaves the daemon's outbox to the service user: before its
first start no outbox.db is created, and reading an existing one leaves every file the owner's. Real
processes, a real service user (nobody, through setpriv) writing the real SQLite outbox afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.boxfiles import DAEMON_EXTRA, VALID, credentials_env, make_box, write_config

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="selftest's root case: needs root and setpriv",
)
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
WRITE = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from mynabox.adapters.outbox import Outbox, SealedBytes
with Outbox(Path(sys.argv[1])) as outbox:
    outbox.put("mynabox/amb-7/summary", sys.argv[2], SealedBytes(b"sealed"), now=datetime.now(UTC))
    print(outbox.depth())
"""


@pytest.fixture
def root() -> Iterator[Path]:
    # Under /tmp with a fixed name, so that the service user can reach it (tmp_path's parents are 0700).
    path = Path(f"/tmp/mynabox-selftest-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o755)
    make_box(path)
    write_config(path, VALID + DAEMON_EXTRA)
    (path / "state").mkdir(mode=0o700)
    os.chown(path / "state", NOBODY, NOBODY)  # systemd's StateDirectory= for the service user
    yield path
    shutil.rmtree(path)


def selftest(root: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mynabox.cli",
            "selftest",
            "--config",
            str(root / "config.toml"),
            "--timeout",
            "1",
        ],
        env={**os.environ, **credentials_env(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[1:2] == ["outbox"])
    return "\n".join(lines[at - 1 : at + 1] if lines[at].startswith("ok") else lines[at : at + 1])


def as_service_user(root: Path, message_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", WRITE, str(root / "state" / "outbox.db"), message_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_selftest_before_the_first_start_creates_no_outbox(root: Path) -> None:
    shown = selftest(root)
    assert "outbox: none yet (the daemon creates it at its first start)" in shown, shown
    assert list((root / "state").iterdir()) == []  # before the fix: outbox.db, root's, 0644
    done = as_service_user(root, "m-1")  # the daemon's first start
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr  # before: "readonly database"


def test_selftest_reading_an_existing_outbox_leaves_it_the_service_users(root: Path) -> None:
    assert as_service_user(root, "m-1").returncode == 0
    shown = selftest(root)
    assert "outbox: 1 message(s) waiting" in shown, shown
    assert {p.stat().st_uid for p in (root / "state").iterdir()} == {NOBODY}
    done = as_service_user(root, "m-2")
    assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr
