"""The standard library's HTTPS connection to addresses resolved beforehand (with a deadline, cached): SNI
and the certificate check still use the host name. Its TLS socket keeps to the connection's `Budget`.

`http.client` rather than urllib3's connection (built on it): one request and response at a time on one
connection is all the client does, and urllib3's 28 modules cost the daemon ≈ 1 MB (README, "Memory").
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import time
from typing import Any

from mynabox.adapters.https.budget import Budget
from mynabox.adapters.https.resolve import Address, connect_any
from mynabox.adapters.https.tls import Context, TcpSocket


class Connection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, addresses: list[Address], *, context: Context, budget: Budget):
        super().__init__(host, port, context=context)
        self._addresses = addresses
        self.budget = budget
        self.last_used = time.monotonic()
        self.raw: TcpSocket | None = None  # the TCP socket under the TLS one, for abort()

    def connect(self) -> None:
        """TCP to the first address that answers (no Nagle: a request goes out in one piece), then TLS with
        the host name for SNI and the certificate check."""
        timeout = self.timeout if isinstance(self.timeout, float | int) else None
        self.sock = connect_any(self._addresses, float(timeout or 5.0), self._socket)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)  # type: ignore[attr-defined]

    def request(  # type: ignore[override]
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """The request, on a kept connection too with this exchange's timeout (set after connecting)."""
        if self.sock is not None and isinstance(self.timeout, float | int):
            self.sock.settimeout(self.timeout)
        super().request(method, url, body=body, headers=headers or {})

    def getresponse(self) -> http.client.HTTPResponse:
        if self.sock is not None and isinstance(self.timeout, float | int):
            self.sock.settimeout(self.timeout)
        return super().getresponse()

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
        if not _readable(sock):
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


def _readable(sock: Any) -> bool:
    ready, _, _ = select.select([sock], [], [], 0.0)
    return bool(ready)
