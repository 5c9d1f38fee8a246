"""Opened messages for the page tests: the synthetic patients sealed by a device and opened by a gateway.

The day is fixed so pages (and their screenshots) do not change with the calendar.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import receiving  # tests/ is on sys.path
from mynabox.gateway.core import ReceiverCore
from mynabox.gateway.store import SeenStore
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened, Opener, Sealer
from mynabox_testkit.broker import DeliveryKit
from mynabox_testkit.patients import PATIENTS, SyntheticPatient, summary_for

DAY = date(2026, 4, 1)
# The 救急用サマリー sample form's sections in its order (after the flags and, when present, allergies).
FORM_ORDER = [
    "patient",
    "visits",
    "dispensings",
    "medications",
    "surgeries",
    "treatments",
    "dialyses",
    "checkup",
]
NOW = datetime(2026, 4, 1, 1, 30, tzinfo=UTC)  # 10:30 JST
DEVICE = "amb-tokyo-01"
OTHER_DEVICE = "amb-tokyo-02"
_DEVICE_KEYS = {
    DEVICE: ec.derive_private_key(0x2000_0001, ec.SECP256R1()),
    OTHER_DEVICE: ec.derive_private_key(0x2000_0003, ec.SECP256R1()),
}
_GATEWAY_KEY = ec.derive_private_key(0x2000_0002, ec.SECP256R1())
_READ = {
    "card_hash": "0123456789abcdef",
    "card_type": "jpki",
    "certificate_check": {"status": "ok"},
    "read_at": NOW.isoformat(),
    "consent": "oral-consent",
}


def body_for(p: SyntheticPatient) -> tuple[Kind, dict[str, object]]:
    """What the box sends for this patient: a summary, or a card record when not registered."""
    summary = summary_for(p, DAY)
    if summary is None:
        cert = base64.b64encode(b"certificate bytes").decode("ascii")
        return Kind.CARD_RECORD, {
            "card_record": {"certificate": cert, "reason": "not-registered"},
            "read": _READ,
        }
    return Kind.SUMMARY, {"summary": summary.to_json(), "read": _READ}


def seal_and_open(
    kind: Kind, body: dict[str, object], *, at: datetime = NOW, seq: int = 1, device: str = DEVICE
) -> Opened:
    sealer = Sealer(device, _DEVICE_KEYS[device], _GATEWAY_KEY.public_key())
    sealed = sealer.seal(kind, body, now=at, clock_synced=True, seq=seq)
    opener = Opener(
        _GATEWAY_KEY,
        {d: k.public_key() for d, k in _DEVICE_KEYS.items()},
        max_age=timedelta(days=7),
        max_skew=timedelta(minutes=5),
        max_size=1024 * 1024,
    )
    return opener.open(sealed.token, now=at)


@pytest.fixture(scope="session")
def opened_by_patient() -> dict[str, Opened]:
    return {p.key: seal_and_open(*body_for(p), seq=i) for i, p in enumerate(PATIENTS, 1)}


# --- the receiver tests (test_core, test_formatting, test_sink) --------------------------------------


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> DeliveryKit:
    return DeliveryKit.create(tmp_path_factory.mktemp("kit"), devices=(receiving.DEV, receiving.OTHER))


@pytest.fixture
def core(kit: DeliveryKit, tmp_path: Path) -> Iterator[ReceiverCore]:
    seen = SeenStore(tmp_path / "seen.sqlite3")
    sunk: list[Opened] = []
    core = ReceiverCore(kit.opener(), seen, sunk.append)
    core.sunk = sunk  # type: ignore[attr-defined]
    try:
        yield core
    finally:
        seen.close()
