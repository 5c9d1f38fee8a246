"""Fixtures for reader adapter tests: one private pcscd per module, healed before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mynabox_testkit.pcscd import PrivatePcscd


@pytest.fixture(scope="module")
def pcscd_module() -> Iterator[PrivatePcscd]:
    # In-process pyscard reads the socket path once per process; PrivatePcscd reuses one path per
    # process, so successive modules' daemons are all reachable from this test process.
    with PrivatePcscd() as daemon:
        daemon.use_in_process()
        yield daemon


@pytest.fixture
def pcscd(pcscd_module: PrivatePcscd) -> PrivatePcscd:
    """The module's daemon, running and with its virtual reader, whatever the last test did to it."""
    if not pcscd_module.vpcd or not pcscd_module.running():
        pcscd_module.set_vpcd(True)
        pcscd_module.restart()
    return pcscd_module
