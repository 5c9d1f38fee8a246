"""`mynabox.record`: records behave as frozen dataclasses do, with one copy of the methods for all."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

import mynabox
from mynabox.adapters import mqtt
from mynabox.core import effects, events
from mynabox.core.events import BrokerOffline, BrokerOnline, Event, Tick
from mynabox.record import Signal, record
from mynabox.summary import port


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


@record
class Thing:
    a: int
    b: str = "x"
    secret: bytes = field(default=b"k", repr=False)
    noise: float = field(default=0.0, compare=False)
    kids: list[Any] = field(default_factory=list, hash=False)


@dataclass(frozen=True)
class Twin:  # Thing as a frozen dataclass
    a: int
    b: str = "x"
    secret: bytes = field(default=b"k", repr=False)
    noise: float = field(default=0.0, compare=False)
    kids: list[Any] = field(default_factory=list, hash=False)


@pytest.mark.parametrize("make", [Thing, Twin])
def test_a_record_compares_hashes_and_freezes_as_a_frozen_dataclass(make: type[Thing]) -> None:
    one, same, other = make(1), make(1, noise=5.0), make(2)
    assert one == same
    assert one != other
    assert one != (1, "x")
    assert hash(make(1, kids=[1])) == hash(make(1))  # hash=False
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.extra = 3  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del one.a  # type: ignore[misc]


@pytest.mark.parametrize("base", [Thing, Twin])
def test_a_plain_subclass_sets_its_own_attributes_but_no_field(base: type[Thing]) -> None:
    sub = type("Sub", (base,), {})(1)
    sub.extra = 2
    del sub.extra
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
        sub.a = 2
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'a'"):
        del sub.a


def test_a_record_is_a_frozen_dataclass_to_its_users() -> None:
    assert repr(Thing(1, kids=[2])) == "Thing(a=1, b='x', noise=0.0, kids=[2])"
    assert repr(Twin(1, kids=[2])) == "Twin(a=1, b='x', noise=0.0, kids=[2])"
    assert hash(Thing(7, "y")) == hash(Twin(7, "y"))
    assert Thing(1) != Twin(1)  # another class, as between two dataclasses
    assert dataclasses.replace(Thing(1), a=2) == Thing(2)
    assert [f.name for f in dataclasses.fields(Thing)] == ["a", "b", "secret", "noise", "kids"]
    assert Thing.__match_args__ == Twin.__match_args__
    match Thing(3):
        case Thing(a, b):
            assert (a, b) == (3, "x")


def test_a_record_that_holds_itself_prints_without_recursing() -> None:
    looped, twin = Thing(1), Twin(1)
    looped.kids.append(looped)
    twin.kids.append(twin)
    assert repr(looped) == "Thing(a=1, b='x', noise=0.0, kids=[...])" == repr(twin).replace("Twin", "Thing")


def test_a_record_keeps_its_own_methods() -> None:
    @record
    class Own:  # noqa: PLW1641 (the record's hash, as a frozen dataclass would add)
        a: int

        def __repr__(self) -> str:
            return "Own!"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Own)

    assert repr(Own(1)) == "Own!"
    assert Own(1) == Own(2)
    assert hash(Own(1)) == hash((1,))

    @record
    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

    with pytest.raises(TypeError):
        hash(Unhashable())


def compiled_for_the_class(method: object) -> bool:
    """A method dataclasses compiled from source text for one class (its __init__ excepted)."""
    code = getattr(inspect.unwrap(method), "__code__", None) if callable(method) else None
    return code is not None and code.co_filename == "<string>" and code.co_name != "__init__"


def test_the_records_share_one_copy_of_the_methods() -> None:
    """dataclasses compiles five methods for each frozen class: 0.6 MB for the daemon's records."""
    compiled = []
    for info in pkgutil.walk_packages(mynabox.__path__, "mynabox."):
        if info.name.startswith("mynabox.commands."):
            continue
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            frozen = dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[union-attr]
            if frozen and any(compiled_for_the_class(method) for method in vars(cls).values()):  # type: ignore[arg-type]
                compiled.append(f"{cls.__module__}.{cls.__qualname__}")  # type: ignore[union-attr]
    assert compiled == []
