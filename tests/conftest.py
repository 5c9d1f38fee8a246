"""Root test configuration shared by every area."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from logguard import Collector, scan_logs

if TYPE_CHECKING:
    from support.notify import NotifySocket

# CI machines have 2 cores shared with the real stack's processes: give hypothesis room, keep it repeatable.
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# --- no synthetic patient's personal data in any log (tests/logguard.py) --------------------------------

_GUARD = Collector()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_personal_data_in_logs: this test logs synthetic personal data on purpose"
    )
    logging.getLogger().addHandler(_GUARD)
    logging.getLogger("mynabox").setLevel(logging.DEBUG)


@pytest.fixture(autouse=True)
def _no_personal_data_in_logs(request: pytest.FixtureRequest) -> object:
    before = _GUARD.take()  # logged between tests (a fixture's teardown): reported with this test
    # Taken now so that tmp_path is torn down after this check.
    tmp_path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    hits = [f"(before this test) {h}" for h in before] + _GUARD.take()
    if tmp_path is not None:
        hits += scan_logs(tmp_path)
    if hits and request.node.get_closest_marker("allow_personal_data_in_logs") is None:
        pytest.fail(
            "personal data of a synthetic patient in the logs:\n  " + "\n  ".join(hits), pytrace=False
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hits = _GUARD.take()  # logged after the last test's check (a module or session fixture's teardown)
    if hits:
        print("\npersonal data of a synthetic patient in the logs after the last test:", *hits, sep="\n  ")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    """systemd's side of sd_notify for a daemon a test starts (closed after the test)."""
    from support.notify import NotifySocket  # here: test_logguard runs this conftest where support is not

    sock = NotifySocket(tmp_path / "notify")
    try:
        yield sock
    finally:
        sock.close()
