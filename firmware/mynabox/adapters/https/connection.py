"""urllib3's HTTPS connection to addresses resolved beforehand (with a deadline, cached): SNI and the
certificate check still use the host name. Its TLS socket keeps to the connection's `Budget`."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

from urllib3.connection import HTTPSConnection
from urllib3.util.wait import wait_for_read

from mynabox.adapters.https.budget import Budget
from mynabox.adapters.https.resolve import Address, connect_any
from mynabox.adapters.https.tls import Context, TcpSocket


class Connection(HTTPSConnection):
    def __init__(self, host: str, port: int, addresses: list[Address], *, context: Context, budget: Budget):
        super().__init__(host, port, ssl_context=context)
        self._addresses = addresses
        self.budget = budget
        self.last_used = time.monotonic()
        self.raw: TcpSocket | None = None  # the TCP socket under the TLS one, for abort()

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, float | int) else None
        return connect_any(self._addresses, float(timeout or 5.0), self._socket)

    def _socket(self, family: socket.AddressFamily) -> socket.socket:
        sock = TcpSocket(family, socket.SOCK_STREAM)
        sock.budget = self.budget
        self.raw = sock
        return sock

    def abort(self) -> None:
        """Wake whatever thread waits on this connection (from any thread): its read or write fails. Once
        wrapped, the TLS socket holds the descriptor (shutting the detached TCP socket did nothing, so close()
        left a lookup waiting on a silent service until its timeout)."""
        raw = self.raw
        if raw is not None:
            live = raw if raw.tls is None else raw.tls
            with contextlib.suppress(OSError):
                socket.socket.shutdown(live, socket.SHUT_RDWR)  # the fd's, not the TLS layer's

    def clean(self) -> bool:
        """Connected, and nothing unread in it (no response bytes left behind, no unsolicited data).

        A readable socket is not yet a closed one: TLS 1.3 session tickets arrive after the handshake. A
        non-blocking read takes them in; anything else there (data, a close) makes the connection unusable.
        """
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket):
            return False
        if sock.pending():
            return False
        if not wait_for_read(sock, timeout=0.0):
            return True
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            with self.budget.suspended():  # arming the budget would make the socket blocking again
                sock.recv(1)
        except ssl.SSLWantReadError:
            return True  # only TLS records of its own (tickets): nothing for us, still open
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)
        return False  # data nobody asked for, or the server's close
