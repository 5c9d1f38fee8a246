"""The transport contract over the in-memory fake and over the real PC/SC stack (pcscd + vpcd)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mynabox.adapters.pcsc import PcscCard, PcscReader
from mynabox.card.transport import Transport
from mynabox_testkit.mynacard import VirtualMyNumberCard
from mynabox_testkit.pcscd import PrivatePcscd
from mynabox_testkit.vpcd import VpcdCardServer
from support.fakecard import FakeCardTransport

from .contract_reader import NotAnnounced, Present, ReaderContract


class TestFakeCardTransport(ReaderContract):
    @pytest.fixture
    def present(self) -> Present:
        return FakeCardTransport


ANNOUNCE_TIMEOUT_S = 5.0  # pcscd polls vpcd every 400 ms; a presented card is announced within ~1 s


@pytest.fixture(scope="module")
def reader(pcscd_module: PrivatePcscd) -> Iterator[PcscReader]:
    with PcscReader() as reader:
        yield reader


@pytest.mark.stack
class TestPcscReader(ReaderContract):
    @pytest.fixture
    def present(self, pcscd: PrivatePcscd, reader: PcscReader) -> Iterator[Present]:
        opened: list[tuple[VpcdCardServer, PcscCard | None]] = []

        def take_away() -> None:
            while opened:
                server, connected = opened.pop()
                if connected is not None:
                    connected.close()
                server.remove()

        def present(card: VirtualMyNumberCard) -> Transport:
            # Each card is a new tap: the last one leaves, and pcscd must have seen it leave before the
            # next is presented (the vpcd re-tap quirk, see test_pcsc._wait_until_empty).
            take_away()
            pcscd.wait_empty()
            server = VpcdCardServer(card, port=pcscd.vpcd_port).start()
            opened.append((server, None))
            connected = reader.wait_for_card(timeout=ANNOUNCE_TIMEOUT_S)
            if connected is None:
                raise NotAnnounced("pcscd did not announce the card")
            opened[-1] = (server, connected)
            return connected

        try:
            yield present
        finally:
            take_away()
