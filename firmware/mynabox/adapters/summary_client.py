"""The summary lookup over HTTPS with mutual TLS (docs/summary-api.openapi.yaml), on a kept-warm connection.

`lookup` never raises: every failure becomes `Unavailable(reason)` so that the box goes on to deliver a
sealed card record. Reasons name the failure (timeout, TLS, HTTP status, malformed response), never the
certificate or the response's content.

Retries are bounded and only for failures a second try can cure: connection refused/reset, timeouts and
5xx. A certificate the server rejects, a 4xx or a malformed response is answered at once. All attempts
together stay within `limit_s`: in a tunnel the mobile link swallows packets, every attempt would wait out
its full timeout, and the crew would watch 照会中 for half a minute instead of getting the card record out.
That includes the name lookup: glibc's resolver knows nothing of socket timeouts (5 s × 2 tries × each
name server by default), so the host name is resolved in a helper thread that the attempt stops waiting for.

Socket timeouts bound one read, not an exchange: a server that drips a byte a second into its status line,
a header, a chunk-size line or a trailer kept a 10 s limit busy for as long as it liked (150 s on 照会中
in the daemon, past the watchdog's patience). So every TLS read, write and handshake of the lookup's
thread waits at most until that thread's deadline (`_DeadlineSocket`), whichever layer is reading.

One round trip per lookup on a mobile link (60-100 ms RTT): a new connection costs TCP + TLS + the request,
three round trips. So the client keeps one connection to the service warm (urllib3's HTTPSConnection; one
service, one connection, so a pool of one): a background thread connects at start, re-connects when the
connection drops, and sends a health request when it has been idle `keepalive_s` (below carrier NAT and
load-balancer idle timeouts). Reconnects resume the TLS 1.3 session (less CPU and no certificate chain on
the air) while its ticket is younger than `session_max_s`; every full handshake verifies the server's chain
and name, and a ticket is only ever offered to the host name whose verified handshake issued it. The
service's addresses are cached for `dns_ttl_s`. A connection is kept only after a clean exchange, with
nothing left unread: after a lookup no response bytes sit in its buffers.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3.exceptions
from urllib3.connection import HTTPSConnection
from urllib3.response import BaseHTTPResponse
from urllib3.util.wait import wait_for_read

from mynabox.summary.model import Summary, SummaryFormatError
from mynabox.summary.port import Found, LookupResult, NotRegistered, Unavailable
from mynabox.tls import TlsFilesError, client_context

log = logging.getLogger(__name__)

LOOKUP_PATH = "/v1/summary-lookups"
HEALTH_PATH = "/v1/health"
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_BACKOFF_S = 2.0
KEEPALIVE_S = 50.0  # below the 60 s idle timeout of common load balancers and carrier NATs' minutes
SESSION_MAX_S = 3600.0  # a resumed session's age at most, whatever the server's ticket says
DNS_TTL_S = 300.0
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "Accept-Encoding": "identity"}


class SummaryClientConfigError(ValueError):
    """The client cannot be built: bad URL, unreadable CA, certificate or key."""


@dataclass(frozen=True)
class _Retryable:
    reason: str


class NameLookupTimeout(TimeoutError):
    """The resolver did not answer within the time the lookup had left."""


Address = tuple[socket.AddressFamily, tuple[Any, ...]]  # family, sockaddr (an IPv6 one keeps its scope)


def _resolve(host: str, port: int, timeout: float) -> list[Address]:
    """The host's addresses, or NameLookupTimeout / OSError. The helper thread may outlive the wait: it
    ends when the resolver gives up, and holds nothing but the host name."""
    answer: list[list[Address] | OSError] = []
    done = threading.Event()

    def run() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answer.append([(family, tuple(sockaddr)) for family, _, _, _, sockaddr in infos])
        except OSError as exc:
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="summary-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise NameLookupTimeout(host)
    if isinstance(answer[0], OSError):
        raise answer[0]
    return answer[0]


class _Addresses:
    """The service's addresses, resolved with a deadline and reused for `ttl_s`; when a fresh answer does not
    come (a tunnel swallows DNS too), the last one is used rather than none."""

    def __init__(self, host: str, port: int, ttl_s: float) -> None:
        self._host, self._port, self._ttl_s = host, port, ttl_s
        self._cached: list[Address] = []
        self._at = float("-inf")
        self._lock = threading.Lock()

    def get(self, timeout: float) -> list[Address]:
        with self._lock:
            if self._cached and time.monotonic() - self._at < self._ttl_s:
                return self._cached
        try:
            addresses = _resolve(self._host, self._port, timeout)
        except OSError:
            with self._lock:
                if self._cached:
                    return self._cached
            raise
        with self._lock:
            self._cached, self._at = addresses, time.monotonic()
        return addresses


def _connect_any(
    addresses: list[Address], timeout: float, on_socket: Callable[[socket.socket], None]
) -> socket.socket:
    """The first of the resolved addresses that answers; `on_socket` learns of each socket first."""
    error: OSError = OSError("the name has no address")
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        on_socket(sock)
        try:
            sock.settimeout(timeout)
            # Headers and body go out in two writes: without NODELAY, Nagle waits for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


# .end: monotonic time the calling thread's network I/O must end by; .stopping: set by its client's close()
_DEADLINE = threading.local()


@contextmanager
def _until(end: float) -> Iterator[None]:
    """Every TLS operation of this thread in the block ends by `end` (monotonic) or raises TimeoutError."""
    previous = getattr(_DEADLINE, "end", None)
    _DEADLINE.end = end if previous is None else min(end, previous)
    try:
        yield
    finally:
        _DEADLINE.end = previous


@contextmanager
def _no_deadline() -> Iterator[None]:
    previous = getattr(_DEADLINE, "end", None)
    _DEADLINE.end = None
    try:
        yield
    finally:
        _DEADLINE.end = previous


class _DeadlineSocket(ssl.SSLSocket):
    """An SSLSocket whose every blocking operation waits only for what is left of its thread's deadline.

    CPython bounds one handshake, read or write by the socket timeout; setting that timeout to the time
    left before each one makes the sum bounded too, however the bytes trickle in.
    """

    def _arm(self) -> None:
        stopping = getattr(_DEADLINE, "stopping", None)
        if stopping is not None and stopping.is_set():
            raise TimeoutError("the client is closing")
        end = getattr(_DEADLINE, "end", None)
        if end is None:
            return
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the lookup's time is up")
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


class _Context(ssl.SSLContext):
    """Our sockets (`_DeadlineSocket`), and the TLS session to resume, offered to the host name whose
    verified handshake issued it and only while it is younger than `max_age_s`."""

    sslsocket_class = _DeadlineSocket

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
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session,
        )

    def keep_session(self, sock: ssl.SSLSocket | None, host: str) -> None:
        """Remember the session of a connection that just completed a clean exchange (TLS 1.3 tickets arrive
        after the handshake, with the first data)."""
        if self._max_age_s is None or sock is None:
            return
        session = sock.session
        if session is None or not session.has_ticket or session is self._session:
            return
        if not sock.session_reused:  # a resumed session keeps the age of the handshake that verified it
            lifetime = min(self._max_age_s, float(session.ticket_lifetime_hint or session.timeout))
            self._session_until = time.monotonic() + lifetime
        self._session, self._session_host = session, host

    def forget_session(self) -> None:
        self._session = self._session_host = None


def _context(ca_file: Path, client_cert: Path, client_key: Path, session_max_s: float | None) -> _Context:
    try:
        ctx = client_context(ca_file, client_cert, client_key, context_class=_Context)
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


class _Connection(HTTPSConnection):
    """urllib3's HTTPS connection, to addresses resolved beforehand (with a deadline, cached): SNI and the
    certificate check still use the host name."""

    def __init__(self, host: str, port: int, addresses: list[Address], *, context: _Context) -> None:
        super().__init__(host, port, ssl_context=context)
        self._addresses = addresses
        self.last_used = time.monotonic()
        self.raw: socket.socket | None = None  # the TCP socket under the TLS one, for abort()

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, float | int) else None
        return _connect_any(self._addresses, float(timeout or 5.0), self._got_socket)

    def _got_socket(self, sock: socket.socket) -> None:
        self.raw = sock

    def abort(self) -> None:
        """Wake whatever thread waits on this connection (from any thread): its read or write fails."""
        if self.raw is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self.raw, socket.SHUT_RDWR)  # the fd's, not the TLS layer's

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
            with _no_deadline():  # _arm would make the socket blocking again
                sock.recv(1)
        except ssl.SSLWantReadError:
            return True  # only TLS records of its own (tickets): nothing for us, still open
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)
        return False  # data nobody asked for, or the server's close


class HttpsSummaryClient:
    """Implements `mynabox.summary.port.SummaryLookup`. `start()` keeps the connection warm in the background;
    without it each lookup still reuses the connection the previous one left. `keepalive_s=None` is
    connection-per-lookup (each lookup connects and closes; no resumption): the old behaviour, for peers."""

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: Path | str,
        client_cert: Path | str,
        client_key: Path | str,
        timeout_s: float = 5.0,
        connect_timeout_s: float | None = None,
        retries: int = 2,
        backoff_s: float = 0.2,
        limit_s: float | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        keepalive_s: float | None = KEEPALIVE_S,
        session_max_s: float = SESSION_MAX_S,
        dns_ttl_s: float = DNS_TTL_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise SummaryClientConfigError("base_url must be https://host[:port][/prefix]")
        try:
            self._port = parts.port or 443
        except ValueError:
            raise SummaryClientConfigError("base_url has a bad port") from None
        bad_limit = limit_s is not None and limit_s <= 0
        bad_keep = keepalive_s is not None and keepalive_s <= 0
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_response_bytes <= 0 or bad_limit or bad_keep:
            raise SummaryClientConfigError("timeouts, retries, backoff and size limit must be positive")
        self._host = parts.hostname
        self._prefix = parts.path.rstrip("/")
        self._keepalive_s = keepalive_s
        self._context = _context(
            Path(ca_file), Path(client_cert), Path(client_key), None if keepalive_s is None else session_max_s
        )
        self._addresses = _Addresses(self._host, self._port, dns_ttl_s if keepalive_s is not None else 0.0)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s or timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._limit_s = limit_s
        self._max_bytes = max_response_bytes
        self._sleep = sleep
        # The warm connection: idle in `_idle`, or checked out by one lookup or the keeper at a time.
        self._lock = threading.Lock()
        self._idle: _Connection | None = None
        self._in_use = 0
        self._closed = False
        self._stopping = threading.Event()
        self._active: set[_Connection] = set()  # connections a lookup is using now (close() aborts them)
        self._keeper: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- the warm connection --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect now and keep the connection warm until `close()` (no-op for connection-per-lookup)."""
        if self._keepalive_s is None or self._keeper is not None:
            return
        self._keeper = threading.Thread(target=self._keep, name="summary-keepalive", daemon=True)
        self._keeper.start()

    def close(self) -> None:
        """Stop the keeper and end a lookup under way at once (it returns Unavailable, so its card record
        can still be queued before the daemon exits)."""
        self._stopping.set()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, None
            active = list(self._active)
        for conn in active:
            conn.abort()
        if idle is not None:
            idle.close()
        self._wake()
        if self._keeper is not None:
            self._keeper.join(timeout=0.5)  # it may sit in a connect in a tunnel: it holds nothing to save
        self._context.forget_session()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"w")

    def _checkout(self) -> _Connection | None:
        """The idle connection if it is still good (it is then ours alone), else None."""
        with self._lock:
            conn, self._idle = self._idle, None
            self._in_use += 1
        if conn is not None and not conn.clean():
            conn.close()
            conn = None
        return conn

    def _checkin(self, conn: _Connection | None, *, keep: bool) -> None:
        """Give a connection back after a clean exchange (keep) or drop it; wake the keeper either way."""
        if conn is not None:
            keep = keep and self._keepalive_s is not None and conn.clean()
            if keep:
                self._context.keep_session(conn.sock, self._host)  # type: ignore[arg-type]
                conn.last_used = time.monotonic()
        with self._lock:
            self._in_use -= 1
            if conn is not None and keep and self._idle is None and not self._closed:
                self._idle, conn = conn, None
        if conn is not None:
            conn.close()
        self._wake()

    def _new_connection(self, end: float, *, track: bool = False) -> _Connection:
        """A connected connection (TCP and TLS done by `end`), or the OSError / SSLError that stopped it.
        `track`: a lookup's, which close() aborts (its handshake too; a TCP connect runs to its timeout)."""
        addresses = self._addresses.get(max(0.01, end - time.monotonic()))
        conn = _Connection(self._host, self._port, addresses, context=self._context)
        conn.timeout = max(0.01, end - time.monotonic())
        if track:
            with self._lock:
                self._active.add(conn)
        try:
            with _until(end):
                conn.connect()
        except BaseException:
            with self._lock:
                self._active.discard(conn)
            conn.close()
            raise
        return conn

    def _keep(self) -> None:
        """The keeper: connect when there is no connection, wait on the idle one (the server closing it wakes
        us at once), send a health request on it when it has been idle `keepalive_s`."""
        assert self._keepalive_s is not None
        backoff = 1.0
        while True:
            with self._lock:
                if self._closed:
                    return
                idle, busy = self._idle, self._in_use > 0
            if idle is None and busy:
                self._wait_wake(None, self._keepalive_s)
            elif idle is None:
                if self._connect_in_background():
                    backoff = 1.0
                else:
                    self._wait_wake(None, backoff)
                    backoff = min(backoff * 2, self._keepalive_s)
            else:
                left = self._keepalive_s - (time.monotonic() - idle.last_used)
                woke = self._wait_wake(idle.sock, left) if left > 0 else "timeout"
                if woke == "readable":  # the server closed it (or sent what nobody asked for): drop it
                    conn = self._checkout()
                    self._checkin(conn, keep=conn is not None)
                elif woke == "timeout":
                    self._ping()

    def _wait_wake(self, sock: socket.socket | None, timeout: float) -> str:
        readers: list[Any] = [self._wake_r] if sock is None else [self._wake_r, sock]
        try:
            ready, _, _ = select.select(readers, [], [], timeout)
        except (OSError, ValueError):  # the connection was closed under us
            return "woken"
        if self._wake_r in ready:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(64):
                    pass
            return "woken"
        return "readable" if ready else "timeout"

    def _connect_in_background(self) -> bool:
        with self._lock:
            self._in_use += 1
        try:
            conn = self._new_connection(time.monotonic() + self._connect_timeout_s)
        except (OSError, ssl.SSLError, urllib3.exceptions.HTTPError) as exc:
            log.info("summary service: cannot connect (%s)", type(exc).__name__)
            self._checkin(None, keep=False)
            return False
        # A fresh connection has had no exchange: keep it (clean() still checks it is connected).
        self._checkin(conn, keep=True)
        return True

    def _ping(self) -> None:
        conn = self._checkout()
        if conn is None:
            self._checkin(None, keep=False)
            return
        ok = self._health_on(conn, time.monotonic() + self._timeout_s) is None
        self._checkin(conn, keep=ok)

    def _health_on(self, conn: _Connection, end: float) -> str | None:
        try:
            with _until(end):
                conn.timeout = max(0.01, end - time.monotonic())
                conn.request("GET", self._prefix + HEALTH_PATH, headers=_HEADERS, preload_content=False)
                response = conn.getresponse()
                response.read(4096)
                if response.length_remaining:
                    return "health answer too large"
                return None if response.status == 200 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as err:
            return f"{type(err).__name__}"

    def health(self) -> str | None:
        """One GET of the service's health endpoint with our client certificate: None when it answers 200."""
        end = time.monotonic() + self._connect_timeout_s + self._timeout_s
        conn = self._checkout()
        try:
            if conn is None:
                conn = self._new_connection(end)
        except (OSError, ssl.SSLError, urllib3.exceptions.HTTPError) as err:
            self._checkin(None, keep=False)
            return f"{type(err).__name__}"
        problem = self._health_on(conn, end)
        self._checkin(conn, keep=problem is None)
        return problem

    # -- the lookup -----------------------------------------------------------------------------------

    def lookup(self, certificate: bytes) -> LookupResult:
        _DEADLINE.stopping = self._stopping
        try:
            return self._lookup(certificate)
        finally:
            _DEADLINE.stopping = None

    def _lookup(self, certificate: bytes) -> LookupResult:
        body = json.dumps({"certificate": base64.b64encode(certificate).decode("ascii")}).encode("ascii")
        reason = "not attempted"
        end = None if self._limit_s is None else time.monotonic() + self._limit_s
        attempts = 0
        for attempt in range(self._retries + 1):
            if self._stopping.is_set():
                reason += ", the box is stopping"
                break
            if attempt:
                pause = min(self._backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                if end is not None and time.monotonic() + pause >= end:
                    reason += ", out of lookup time"
                    break
                self._sleep(pause)
            attempts += 1
            outcome = self._attempt_safely(body, end)
            if not isinstance(outcome, _Retryable):
                return outcome
            reason = outcome.reason
            log.info("summary lookup attempt %d failed: %s", attempt + 1, reason)
        return Unavailable(f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''})")

    def _attempt_safely(self, body: bytes, end: float | None) -> LookupResult | _Retryable:
        try:
            outcome = self._attempt(body, end, warm=True)
            if isinstance(outcome, _Stale):  # the server had closed the kept connection: once more, fresh
                outcome = self._attempt(body, end, warm=False)
            return Unavailable(outcome.reason) if isinstance(outcome, _Stale) else outcome
        except Exception as exc:  # the port promises no exception escapes; the card record goes out instead
            log.warning("summary lookup: unexpected %s", type(exc).__name__)
            return Unavailable(f"internal error ({type(exc).__name__})")

    def _attempt(self, body: bytes, end: float | None, *, warm: bool) -> LookupResult | _Retryable | _Stale:
        conn = self._checkout() if warm else None
        if not warm:
            with self._lock:
                self._in_use += 1
        reused = conn is not None
        keep = False
        try:
            if conn is None:
                connect_end = time.monotonic() + min(self._connect_timeout_s, _left(end))
                try:
                    conn = self._new_connection(connect_end, track=True)
                except NameLookupTimeout:
                    return _Retryable("name lookup timed out")
                except socket.gaierror as exc:
                    return _Retryable(f"cannot resolve the service's name ({type(exc).__name__})")
                except ssl.SSLCertVerificationError:
                    return Unavailable("TLS: the service's certificate was not accepted")
                except ssl.SSLError as exc:
                    return Unavailable(f"TLS handshake failed ({exc.reason or 'unknown'})")
                except TimeoutError:
                    return _Retryable("connect timed out")
                except ConnectionRefusedError:
                    return _Retryable("connection refused")
                except OSError as exc:
                    return _Retryable(f"cannot connect ({type(exc).__name__})")
            exchange_end = time.monotonic() + min(self._timeout_s, _left(end))
            with self._lock:
                self._active.add(conn)
            if self._stopping.is_set():  # close() came while we connected: it could not see this one
                conn.abort()
            with _until(exchange_end):
                outcome = self._exchange(conn, body, exchange_end, reused=reused)
            keep = isinstance(outcome, Found | NotRegistered)
            return outcome
        finally:
            with self._lock:
                self._active.discard(conn)
            self._checkin(conn, keep=keep)

    def _exchange(
        self, conn: _Connection, body: bytes, end: float, *, reused: bool
    ) -> LookupResult | _Retryable | _Stale:
        started = False  # any byte of the answer arrived: a failure after it is no stale connection
        try:
            conn.timeout = max(0.01, end - time.monotonic())
            path = self._prefix + LOOKUP_PATH
            conn.request("POST", path, body=body, headers=_HEADERS, preload_content=False)
            response = conn.getresponse()
            started = True
            status = response.status
            data = self._read_limited(response)
        except _TooLarge:
            return Unavailable("response too large")
        except (TimeoutError, urllib3.exceptions.TimeoutError):
            return _Retryable("timed out waiting for the service")
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
            if reused and not started:  # the kept connection's TLS was closed under our request
                return _Stale(f"connection lost ({type(exc).__name__})")
            return Unavailable(f"TLS failed ({exc.reason or 'unknown'})")
        except (ssl.SSLError, urllib3.exceptions.SSLError) as exc:
            # With TLS 1.3 the server's verdict on our certificate arrives after the handshake.
            tls: BaseException = exc.args[0] if exc.args and isinstance(exc.args[0], ssl.SSLError) else exc
            return Unavailable(f"TLS failed ({getattr(tls, 'reason', None) or 'unknown'})")
        except urllib3.exceptions.ProtocolError as exc:
            cause = exc.args[1] if len(exc.args) > 1 else None
            if isinstance(cause, ConnectionError):
                return _Retryable("connection lost")
            if isinstance(cause, OSError):
                return _Retryable(f"network error ({type(cause).__name__})")
            return Unavailable(f"malformed HTTP response ({type(cause or exc).__name__})")
        except (ConnectionError, http.client.RemoteDisconnected) as exc:
            if reused and not started:
                return _Stale(f"connection lost ({type(exc).__name__})")
            return _Retryable("connection lost")
        except (http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            return Unavailable(f"malformed HTTP response ({type(exc).__name__})")
        except OSError as exc:
            return _Retryable(f"network error ({type(exc).__name__})")
        if 500 <= status <= 599:
            return _Retryable(f"service error HTTP {status}")
        return _interpret(status, data)

    def _read_limited(self, response: BaseHTTPResponse) -> bytes:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self._max_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = response.read(min(65536, self._max_bytes + 1 - total), decode_content=False)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > self._max_bytes:
                raise _TooLarge


@dataclass(frozen=True)
class _Stale:
    """The kept connection had been closed by the server before our request: not the service's failure."""

    reason: str


def _left(end: float | None) -> float:
    """Seconds left before the lookup's limit (never 0: a socket timeout of 0 means non-blocking)."""
    return float("inf") if end is None else max(0.01, end - time.monotonic())


class _TooLarge(Exception):
    pass


def _interpret(status: int, data: bytes) -> LookupResult:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return Unavailable(f"HTTP {status} with a body that is not JSON")
    kind = doc.get("status") if isinstance(doc, dict) else None
    if status == 200 and kind == "found" and isinstance(doc, dict) and set(doc) == {"status", "summary"}:
        try:
            return Found(Summary.from_json(doc["summary"]))
        except SummaryFormatError as exc:
            return Unavailable(f"malformed summary ({exc})")
        except RecursionError:
            return Unavailable("malformed summary (nested too deeply)")
    if status == 404 and kind == "not_registered":
        return NotRegistered()
    return Unavailable(f"unexpected response HTTP {status}")
