"""Every message the reference receiver of a stack test accepted is checked, as it came off the broker,
against docs/gateway/asyncapi.yaml as the stock @asyncapi/parser reads it (tests/gateway/contract.py).

`received`: what a gateway receiver on the module's `stack` opened during one test (the daemon's helpers are
in `support.daemon`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.contract import wire_problems  # tests/ is on sys.path
from mynabox.gateway.core import Accepted, Duplicate, Verdict
from mynabox.payload.seal import Opened
from mynabox_testkit.stack import BoxStack


@pytest.fixture(autouse=True)
def _messages_fit_the_asyncapi_document(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    captured: list[tuple[str, bytes]] = []
    original: Callable[..., Any] = BoxStack.gateway_receiver

    def gateway_receiver(self: BoxStack, sink: Any, **kwargs: Any) -> Any:
        def on_raw(topic: str, payload: bytes, verdict: Verdict) -> None:
            if isinstance(verdict, Accepted | Duplicate):
                captured.append((topic, payload))

        return original(self, sink, on_raw=on_raw, **kwargs)

    monkeypatch.setattr(BoxStack, "gateway_receiver", gateway_receiver)
    yield
    for topic, payload in captured:
        assert wire_problems(topic.rsplit("/", 1)[1], payload) == [], topic


@pytest.fixture
def received(stack: BoxStack, tmp_path: Path) -> Iterator[list[Opened]]:
    """A gateway receiver on the module's `stack` for this test: what it opened, in order."""
    assert stack.kit is not None and stack.broker is not None
    opened: list[Opened] = []
    receiver = stack.gateway_receiver(opened.append, client_id=f"gw-{tmp_path.name}")
    receiver.start()
    assert receiver.subscribed.wait(10)
    yield opened
    receiver.stop()
