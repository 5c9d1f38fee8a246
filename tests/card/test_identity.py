"""The keyed card hash: the only name logs and the audit record have for a card."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from mynabox.card.identity import card_key_hash


def test_is_a_short_hmac_sha256() -> None:
    digest = card_key_hash(b"certificate", b"key-1")
    assert len(digest) == 16
    assert digest == hmac.new(b"key-1", b"certificate", hashlib.sha256).hexdigest()[:16]
    assert digest == card_key_hash(b"certificate", b"key-1")


def test_depends_on_key_and_certificate() -> None:
    base = card_key_hash(b"certificate", b"key-1")
    assert base != card_key_hash(b"certificate", b"key-2")
    assert base != card_key_hash(b"certificatf", b"key-1")
    assert base != hashlib.sha256(b"certificate").hexdigest()[:16]  # keyed, not a bare digest


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="key"):
        card_key_hash(b"certificate", b"")
