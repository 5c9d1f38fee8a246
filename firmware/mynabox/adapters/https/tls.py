"""The client's TLS: sockets that keep to their connection's budget, and the session cache.

Reconnects resume the TLS 1.3 session (less CPU and no certificate chain on the air) while its ticket is
younger than `max_age_s`; every full handshake verifies the server's chain and name, and a ticket is only
ever offered to the host name whose verified handshake issued it.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any, cast

from mynabox.adapters.https.budget import Budget
from mynabox.tls import TlsFilesError, client_context


class SummaryClientConfigError(ValueError):
    """The client cannot be built: bad URL, unreadable CA, certificate or key."""


class TcpSocket(socket.socket):
    """A TCP socket that carries its connection's budget to the TLS socket made from it, and knows that TLS
    socket: wrapping hands it the file descriptor (this one is detached, before the handshake)."""

    budget: Budget | None = None
    tls: ssl.SSLSocket | None = None


SESSION_LOOKS = 3  # the keeper's check-in after connecting may come before the server's ticket


class DeadlineSocket(ssl.SSLSocket):
    """An SSLSocket whose every blocking operation waits only for what is left of its budget.

    CPython bounds one handshake, read or write by the socket timeout; setting that timeout to the time
    left before each one makes the sum bounded too, however the bytes trickle in.
    """

    budget: Budget | None = None
    session_looks = 0  # how often `keep_session` read `.session` on this connection (see there)

    def _arm(self) -> None:
        left = None if self.budget is None else self.budget.left()
        if left is not None:
            self.settimeout(left)

    def do_handshake(self, block: bool = False) -> None:
        self._arm()
        super().do_handshake(block)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        self._arm()
        return super().read(len, buffer)

    def send(self, data: Any, flags: int = 0) -> int:
        self._arm()
        return super().send(data, flags)


class Context(ssl.SSLContext):
    """Our sockets (`DeadlineSocket`), and the TLS session to resume, offered to the host name whose
    verified handshake issued it and only while it is younger than `max_age_s`."""

    sslsocket_class = DeadlineSocket

    def setup(self, max_age_s: float | None) -> None:
        self._max_age_s = max_age_s  # None: no resumption
        self._session: ssl.SSLSession | None = None
        self._session_host: str | None = None
        self._session_until = 0.0

    def wrap_socket(  # noqa: PLR0917 (SSLContext's signature)
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        if session is None and self._session is not None and server_hostname == self._session_host:
            session = self._session if time.monotonic() < self._session_until else None
        wrapped = cast(
            DeadlineSocket,
            super().wrap_socket(
                sock,
                server_side=server_side,
                do_handshake_on_connect=False,  # below, once the budget is on the socket
                suppress_ragged_eofs=suppress_ragged_eofs,
                server_hostname=server_hostname,
                session=session,
            ),
        )
        if isinstance(sock, TcpSocket):
            wrapped.budget, sock.tls = sock.budget, wrapped
        if do_handshake_on_connect:
            try:
                wrapped.do_handshake()
            except BaseException:
                wrapped.close()
                raise
        return wrapped

    def keep_session(self, sock: ssl.SSLSocket | None, host: str) -> None:
        """Remember the session of a connection after a clean exchange (TLS 1.3 tickets arrive after the
        handshake, with the first data; `clean()` has read them).

        Until it has a ticket, and at most `SESSION_LOOKS` times per connection: CPython's `SSLSocket.session`
        copies the session through DER at every read and never frees the copy (≈ 5.6 KB each on 3.11 with
        OpenSSL 3). Read at every lookup and keep-alive, it was most of what the daemon's RSS gained over its
        first hundred reads."""
        if self._max_age_s is None or sock is None:
            return
        looks = getattr(sock, "session_looks", 0)
        if looks >= SESSION_LOOKS:
            return
        if isinstance(sock, DeadlineSocket):
            sock.session_looks = looks + 1
        session = sock.session
        if session is None or not session.has_ticket or session is self._session:
            return
        if isinstance(sock, DeadlineSocket):
            sock.session_looks = SESSION_LOOKS  # this connection's ticket is held: no need to look again
        if not sock.session_reused:  # a resumed session keeps the age of the handshake that verified it
            lifetime = min(self._max_age_s, float(session.ticket_lifetime_hint or session.timeout))
            self._session_until = time.monotonic() + lifetime
        self._session, self._session_host = session, host

    def forget_session(self) -> None:
        self._session = self._session_host = None


def context(ca_file: Path, client_cert: Path, client_key: Path, session_max_s: float | None) -> Context:
    try:
        ctx = client_context(ca_file, client_cert, client_key, context_class=Context)
    except TlsFilesError as err:
        exc = err.cause
        if err.part == "ca":
            shown = getattr(exc, "strerror", None) or exc
            raise SummaryClientConfigError(f"cannot load the service CA from {ca_file}: {shown}") from exc
        # Never echo key material: name the files and the kind of failure only.
        raise SummaryClientConfigError(
            f"cannot load the client certificate {client_cert} / key {client_key}: {type(exc).__name__}"
        ) from exc
    ctx.setup(session_max_s)
    return ctx
