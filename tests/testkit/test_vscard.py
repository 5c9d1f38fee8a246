"""The VSCard card side (tests/support/vscard.py): against qemu's real usb-ccid + ccid-card-passthru devices
(handshake, insert, remove, a refused ATR: qemu answers these itself, no guest needed), and against qemu's
recorded bytes for what only a guest's reader makes qemu send (command APDUs). The whole path through a
guest's pcscd + libccid is the image's boot test."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator

import pytest

from mynabox_testkit.mynacard import AID_JPKI, Faults, VirtualMyNumberCard
from mynabox_testkit.ports import free_port
from support import vscard
from support.vscard import VscardCard, VscardError

CARD = "VSCARDTESTCARD000000001"
# What qemu 7.2's ccid-card-passthru sent in a recorded run (test_qemu_* below make it send these again):
# its Init (magic "VSCD" as bytes, version 2, no capabilities) and each Error acknowledging success.
QEMU_INIT = bytes.fromhex("00000001ffffffff0000000c" + "56534344" + "00000002" + "00000000")
QEMU_OK = bytes.fromhex("00000002" + "00000000" + "00000004" + "00000000")
QEMU_REFUSED = bytes.fromhex("00000002" + "00000000" + "00000004" + "00000001")
SELECT_JPKI = bytes.fromhex("00A4040C0A") + AID_JPKI


@pytest.fixture
def qemu_port() -> Iterator[int]:
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        pytest.skip("qemu-system-aarch64 missing (scripts/install-deps.sh installs qemu-system-arm)")
    port = free_port()
    # -S: no CPU runs and no guest is loaded; the devices and the chardev are live in qemu's main loop.
    vm = subprocess.Popen(
        [qemu, "-M", "virt", "-S", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
         "-device", "qemu-xhci", "-device", "usb-ccid", "-device", "ccid-card-passthru,chardev=cc",
         "-chardev", f"socket,id=cc,host=127.0.0.1,port={port},server=on,wait=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield port
    finally:
        vm.kill()
        vm.wait()
        assert vm.stderr is not None
        vm.stderr.close()


def test_qemu_usb_ccid_takes_the_reader_the_card_and_its_removal(qemu_port: int) -> None:
    with VscardCard(VirtualMyNumberCard(CARD), port=qemu_port) as link:
        assert link.host_version == vscard.VERSION
        link.insert()
        link.remove()
        link.insert(VirtualMyNumberCard(CARD))  # inserted again, as a test's second tap does


def test_qemu_refuses_an_inconsistent_atr(qemu_port: int) -> None:
    card = VirtualMyNumberCard(CARD)
    card.atr = bytes.fromhex("00888001")  # TS must be 3B or 3F
    with VscardCard(card, port=qemu_port) as link, pytest.raises(VscardError, match="error 1"):
        link.insert()


class RecordedHost:
    """qemu's side from its recorded bytes: Init and acks as qemu sends them, APDUs as a guest makes it."""

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair()
        self.link_sock = theirs
        self.received: list[tuple[int, int, bytes]] = []
        self._messages: list[tuple[int, int, bytes]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while (message := vscard.read_message(self.sock)) is not None:
            with self._cond:
                self.received.append(message)
                self._cond.notify_all()
            kind = message[0]
            if kind == vscard.INIT:
                self.sock.sendall(QEMU_INIT)
            elif kind == vscard.ATR and message[2][:1] not in (b"\x3b", b"\x3f"):
                self.sock.sendall(QEMU_REFUSED)  # as qemu's check_atr refuses it
            elif kind in (vscard.READER_ADD, vscard.ATR, vscard.CARD_REMOVE):
                self.sock.sendall(QEMU_OK)

    def wait_for(self, kind: int, count: int = 1, timeout: float = 5.0) -> list[tuple[int, int, bytes]]:
        with self._cond:
            self._cond.wait_for(lambda: len([m for m in self.received if m[0] == kind]) >= count, timeout)
            return [m for m in self.received if m[0] == kind]

    def apdu(self, command: bytes) -> None:
        self.sock.sendall(vscard.encode(vscard.APDU, 0, command))


def test_the_guests_apdus_are_answered_by_the_virtual_card() -> None:
    host = RecordedHost()
    card = VirtualMyNumberCard(CARD)
    link = VscardCard(card).connect(sock=host.link_sock)
    link.insert()
    assert host.wait_for(vscard.ATR)[0] == (vscard.ATR, 0, card.atr)
    host.apdu(SELECT_JPKI)
    assert host.wait_for(vscard.APDU)[0] == (vscard.APDU, 0, b"\x90\x00")
    assert card.log == [SELECT_JPKI]
    link.close()


def test_a_card_leaving_mid_read_is_removed_and_the_link_keeps_working() -> None:
    host = RecordedHost()
    link = VscardCard(VirtualMyNumberCard(CARD, faults=Faults(remove_after=1))).connect(sock=host.link_sock)
    link.insert()
    host.apdu(SELECT_JPKI)
    assert host.wait_for(vscard.CARD_REMOVE)  # after its last answer, unasked
    bad = VirtualMyNumberCard(CARD)
    bad.atr = bytes.fromhex("00888001")
    with pytest.raises(VscardError, match="error 1"):  # the removal's ack is not taken for this ATR's
        link.insert(bad)
    link.insert(VirtualMyNumberCard(CARD))
    host.apdu(SELECT_JPKI)
    assert host.wait_for(vscard.APDU, 2)[-1][2] == b"\x90\x00"
    link.close()


def test_hostile_host_messages_are_ignored_or_drop_the_connection() -> None:
    host = RecordedHost()
    link = VscardCard(VirtualMyNumberCard(CARD)).connect(sock=host.link_sock)
    host.sock.sendall(vscard.encode(0x77, 0, b"junk"))  # an unknown type: ignored
    host.sock.sendall(vscard.encode(vscard.INIT, 0, b"XXXX"))  # an Init without the magic: ignored
    host.apdu(SELECT_JPKI)  # no card inserted: the card still answers (qemu only asks with a card present)
    assert host.wait_for(vscard.APDU)
    host.sock.sendall(struct.pack(">III", vscard.APDU, 0, 1 << 30))  # a 1 GiB length: dropped, not read
    assert link._thread is not None
    link._thread.join(timeout=5)
    assert not link._thread.is_alive()
    link.close()
