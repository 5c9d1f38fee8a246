"""Records: the box's frozen values, as `@dataclass(frozen=True)` makes them, for less memory.

On CPython 3.11 `dataclasses` compiles `__eq__`, `__hash__`, `__repr__`, `__setattr__` and `__delattr__` anew
for every frozen class, from source text, although the five do the same for every record: with ≈ 110 records
in the daemon that came to 0.6 MB of its memory (README, "Memory"). `@record` keeps what is particular to a
class (`__init__`, `__match_args__`, the fields for `dataclasses.fields` and `replace`) and gives every record
one shared copy of the five, which do what the generated ones do: equal only to a record of the same class
with equal compared fields, the hash of those fields, `Name(field=value, ...)` without the fields marked
`repr=False`, `FrozenInstanceError` on assigning or deleting an attribute. A class's own `__eq__`, `__hash__`
or `__repr__` stays, as with dataclasses. `Signal` is the record without fields (an event such as `Tick`).
"""

from __future__ import annotations

import dataclasses
import reprlib
from typing import Any, NoReturn, TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[_T]) -> type[_T]:
    """`@dataclass(frozen=True)` with the shared methods."""
    own = dict(vars(cls))
    made = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
    # As dataclasses decides: a body that defines __eq__ sets __hash__ to None, which is no hash of its own.
    hashless = own.get("__hash__") is None and ("__hash__" not in own or "__eq__" in own)
    for name, method in vars(_Shared).items():
        if name in _SHARED and (name not in own or (name == "__hash__" and hashless)):
            # dataclasses compiled the frozen pair for this class (it refuses a class's own); its __init__
            # sets the fields through object.__setattr__, so the shared pair serves as well.
            setattr(made, name, method)
    return made


_SHARED = ("__eq__", "__hash__", "__repr__", "__setattr__", "__delattr__")


class _Shared:
    """The methods every record shares, as `dataclasses` would generate them for a frozen class."""

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _compared(self) == _compared(other)

    def __hash__(self) -> int:
        hashed = (f for f in dataclasses.fields(self) if (f.compare if f.hash is None else f.hash))  # type: ignore[arg-type]
        return hash(tuple(getattr(self, f.name) for f in hashed))

    def __setattr__(self, name: str, value: object) -> None:
        if _frozen(self, name):
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if _frozen(self, name):
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        shown = (f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)  # type: ignore[arg-type]
        return f"{self.__class__.__qualname__}({', '.join(shown)})"


def _frozen(obj: object, name: str) -> bool:
    """A record's attributes are all frozen; a plain subclass's own ones are not (as with dataclasses)."""
    return "__dataclass_params__" in vars(type(obj)) or name in obj.__dataclass_fields__  # type: ignore[attr-defined]


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
