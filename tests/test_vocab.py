"""`vocab.Signal`, the records without fields: what a frozen dataclass gives them, for less memory."""

from __future__ import annotations

import dataclasses
from types import ModuleType

import pytest

from mynabox.adapters import mqtt
from mynabox.core import effects, events
from mynabox.core.events import BrokerOffline, BrokerOnline, Event, Tick
from mynabox.summary import port
from mynabox.vocab import Signal


def test_a_signal_equals_its_own_class_only() -> None:
    assert Tick() == Tick()
    assert hash(Tick()) == hash(Tick())
    assert BrokerOnline() != BrokerOffline()
    assert Tick() != ()  # not a tuple, unlike a NamedTuple without fields
    assert len({Tick(), Tick(), BrokerOnline()}) == 2
    assert repr(BrokerOnline()) == "BrokerOnline()"


def test_a_signal_is_immutable() -> None:
    tick = Tick()
    with pytest.raises(dataclasses.FrozenInstanceError):
        tick.at = 1.0  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del tick.at  # type: ignore[attr-defined]


def test_a_signal_matches_its_class_pattern() -> None:
    def name(event: Event) -> str:
        match event:
            case BrokerOnline():
                return "online"
            case Tick():
                return "tick"
            case _:
                return "other"

    assert [name(Tick()), name(BrokerOnline()), name(BrokerOffline())] == ["tick", "online", "other"]


@pytest.mark.parametrize("module", [events, effects, mqtt, port], ids=lambda m: m.__name__)
def test_records_without_fields_are_signals(module: ModuleType) -> None:
    """A frozen dataclass compiles six methods per class (≈ 12 KB on CPython 3.11), with or without fields."""
    records = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__]
    fieldless = [c.__name__ for c in records if dataclasses.is_dataclass(c) and not dataclasses.fields(c)]
    assert fieldless == []
    assert any(issubclass(c, Signal) for c in records)
