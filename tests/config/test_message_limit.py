"""sealing.max_message_bytes: at most the limit receivers and brokers share, at least a card record's need."""

from __future__ import annotations

from pathlib import Path

import pytest

from mynabox.config import load_config
from mynabox.payload.envelope import MAX_MESSAGE_BYTES, MIN_MESSAGE_BYTES

from .test_load import VALID, box, env, issues_of, write  # box: the fixture (a config dir and its files)

__all__ = ["box"]  # used as a fixture, not called


def with_limit(value: int) -> str:
    return VALID.replace(
        'gateway_public_key = "gateway.pem"',
        f'gateway_public_key = "gateway.pem"\nmax_message_bytes = {value}',
    )


def test_the_default_is_the_shared_limit(box: Path) -> None:
    assert load_config(write(box, VALID), environ=env(box)).sealing.max_message_bytes == MAX_MESSAGE_BYTES


@pytest.mark.parametrize("value", [MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES])
def test_a_box_may_lower_it_down_to_what_a_card_record_needs(box: Path, value: int) -> None:
    assert load_config(write(box, with_limit(value)), environ=env(box)).sealing.max_message_bytes == value


@pytest.mark.parametrize("value", [MIN_MESSAGE_BYTES - 1, MAX_MESSAGE_BYTES + 1])
def test_past_either_bound_is_a_config_error(box: Path, value: int) -> None:
    expected = (
        f"sealing.max_message_bytes: {value} is out of range ({MIN_MESSAGE_BYTES}..{MAX_MESSAGE_BYTES})"
    )
    assert issues_of(write(box, with_limit(value)), env(box)) == [expected]
