"""Keys and openers for the payload tests: fixed scalars, so failures reproduce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.payload.seal import Opener, Sealer

NOW = datetime(2026, 4, 1, 9, 30, 0, tzinfo=UTC)
MAX_AGE = timedelta(days=7)
MAX_SKEW = timedelta(minutes=5)
MAX_SIZE = 64 * 1024
DEVICE = "amb-tokyo-01"
OTHER = "amb-tokyo-02"


def fixed_key(n: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x1000_0000_0000 + n, ec.SECP256R1())


@pytest.fixture(scope="session")
def device_key() -> ec.EllipticCurvePrivateKey:
    return fixed_key(1)


@pytest.fixture(scope="session")
def other_key() -> ec.EllipticCurvePrivateKey:
    return fixed_key(2)


@pytest.fixture(scope="session")
def gateway_key() -> ec.EllipticCurvePrivateKey:
    return fixed_key(3)


@pytest.fixture(scope="session")
def sealer(device_key: ec.EllipticCurvePrivateKey, gateway_key: ec.EllipticCurvePrivateKey) -> Sealer:
    return Sealer(DEVICE, device_key, gateway_key.public_key())


@pytest.fixture(scope="session")
def opener(
    device_key: ec.EllipticCurvePrivateKey,
    other_key: ec.EllipticCurvePrivateKey,
    gateway_key: ec.EllipticCurvePrivateKey,
) -> Opener:
    return Opener(
        gateway_key,
        {DEVICE: device_key.public_key(), OTHER: other_key.public_key()},
        max_age=MAX_AGE,
        max_skew=MAX_SKEW,
        max_size=MAX_SIZE,
    )
