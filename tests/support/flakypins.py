"""gpiozero mock pins that fail like a GPIO chip that went away: every access to a broken line raises EIO."""

from __future__ import annotations

from collections import Counter

from gpiozero.pins.mock import MockFactory, MockPin


class FlakyPin(MockPin):  # type: ignore[misc]
    def _check(self) -> None:
        if self.info.name in self.factory.broken:
            self.factory.failures[self.info.name] += 1
            raise OSError(5, "Input/output error")

    def _set_function(self, value: str) -> None:
        self._check()
        super()._set_function(value)

    def _get_state(self) -> bool:
        self._check()
        return bool(super()._get_state())

    def _set_state(self, value: bool) -> None:
        self._check()
        super()._set_state(value)


class FlakyFactory(MockFactory):  # type: ignore[misc]
    """`broken`: the primary names ("GPIO17") of the lines that fail now; clear it and they work again.
    `failures`: how many accesses failed, by line."""

    def __init__(self) -> None:
        super().__init__(pin_class=FlakyPin)
        self.broken: set[str] = set()
        self.failures: Counter[str] = Counter()
