"""Test servers' ports lie below the kernel's ephemeral range, where no outgoing connection takes them."""

from __future__ import annotations

import socket

from mynabox_testkit.ports import RANGE_FILE, free_port, port_free


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    start = int(RANGE_FILE.read_text().split()[0])
    for count in (1, 2):
        port = free_port(count)
        assert port + count <= start
        for p in range(port, port + count):
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))  # raises if it was not free


def test_a_held_port_is_not_free_until_closed() -> None:
    # What free_port checks each candidate with: a port below the range that something listens on.
    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        assert not port_free(port)
    assert port_free(port)
