"""Keys as bytes: secrets never print, the audit key's length rule."""

from __future__ import annotations

import pickle

import pytest

from mynabox.payload import keys
from mynabox.payload.keys import KeyFileError, Secret


def test_secret_is_masked() -> None:
    secret = Secret(b"hunter2-audit-key")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == b"hunter2-audit-key"
    assert secret == Secret(b"hunter2-audit-key") and secret != Secret(b"other")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    pem = keys.private_key_pem(keys.generate_device_key())
    assert "PRIVATE" not in repr(pem)


def test_a_short_audit_key_is_refused_by_name() -> None:
    assert keys.parse_audit_key(b"\x01" * 32).reveal() == b"\x01" * 32
    with pytest.raises(KeyFileError, match=r"^audit-key: an audit key needs at least 32 bytes$"):
        keys.parse_audit_key(b"short", source="audit-key")
