"""Records: the box's frozen values, as `@dataclass(frozen=True)` makes them, for less memory.

On CPython 3.11 `dataclasses` compiles `__eq__`, `__hash__` and `__repr__` anew for every class, from source
text, although the three do the same for every record; with ≈ 110 records in the daemon that came to 0.45 MB
of its memory (README, "Memory"). `@record` keeps what is particular to a class (`__init__`, the frozen
`__setattr__` and `__delattr__`, `__match_args__`, the fields for `dataclasses.fields` and `replace`) and
gives every record one shared copy of the three, which do what the generated ones do: equal only to a record
of the same class with equal compared fields, the hash of those fields, `Name(field=value, ...)` without the
fields marked `repr=False`. `Signal` is the record without fields (an event such as `Tick`).
"""

from __future__ import annotations

import dataclasses
import reprlib
from typing import Any, NoReturn, TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[_T]) -> type[_T]:
    """`@dataclass(frozen=True)` with the shared `__eq__`, `__hash__` and `__repr__` (a class's own stay)."""
    made = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
    own = dict(vars(made))
    # As dataclasses decides: a body that defines __eq__ sets __hash__ to None, which is no hash of its own.
    hashless = own.get("__hash__") is None and ("__hash__" not in own or "__eq__" in own)
    for name in ("__eq__", "__repr__", "__hash__"):
        if name not in own or (name == "__hash__" and hashless):
            setattr(made, name, vars(_Shared)[name])
    return made


class _Shared:
    """The methods every record shares, as `dataclasses` would generate them for a frozen class."""

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _compared(self) == _compared(other)

    def __hash__(self) -> int:
        hashed = (f for f in dataclasses.fields(self) if (f.compare if f.hash is None else f.hash))  # type: ignore[arg-type]
        return hash(tuple(getattr(self, f.name) for f in hashed))

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = (f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)  # type: ignore[arg-type]
        return f"{self.__class__.__qualname__}({', '.join(shown)})"


def _compared(obj: Any) -> tuple[object, ...]:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj) if f.compare)


class Signal:
    """A record without fields, such as the events `Tick` and `BrokerOnline` or the effect `Stop`: equal to
    every other of its class, hashable, immutable, printed as `Tick()`, matched by `case Tick():`. What
    `@dataclass(frozen=True)` gives such a class, without the six methods it compiles anew for every class
    (≈ 12 KB each on CPython 3.11)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True if other.__class__ is self.__class__ else NotImplemented

    def __hash__(self) -> int:
        return hash(self.__class__)

    def __repr__(self) -> str:
        return f"{self.__class__.__qualname__}()"

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
