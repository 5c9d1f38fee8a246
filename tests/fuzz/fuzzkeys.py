"""Fixed keys for the envelope and receiver targets (fixed scalars: a crash reproduces from its input)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec

DEVICE = "amb-fuzz-01"
OTHER = "amb-fuzz-02"
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
MAX_SIZE = 64 * 1024


def key(n: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x2000_0000_0000 + n, ec.SECP256R1())


DEVICE_KEY, OTHER_KEY, GATEWAY_KEY = key(1), key(2), key(3)


def opener() -> object:
    from mynabox.payload.seal import Opener

    return Opener(
        GATEWAY_KEY,
        {DEVICE: DEVICE_KEY.public_key(), OTHER: OTHER_KEY.public_key()},
        max_age=timedelta(days=7),
        max_skew=timedelta(minutes=5),
        max_size=MAX_SIZE,
    )


def sealer() -> object:
    from mynabox.payload.seal import Sealer

    return Sealer(DEVICE, DEVICE_KEY, GATEWAY_KEY.public_key())
