"""The received pages, served to a tablet or a printer on a port the gateway chooses (loopback by default).

Pages hold patient data, so they live in memory only, for the retention the gateway sets, and within a count
and a byte budget per device and in all: nothing is written to disk and a restart forgets them (the
gateway's own store is the record). The list shows what came in the retention window, not the calendar day:
a transport crosses midnight.

The server is bounded so that nothing a client does reaches the MQTT side of the receiver: a connection cap
inside the process's descriptor limit (paho needs descriptors, and ones below 1024, to reconnect), a deadline
for the request and for the whole connection, a cap on the request's size, and a ``Host`` check against DNS
rebinding. Off loopback it serves TLS, with client certificates when given a CA. It logs when a limit bites,
and nothing of a request beyond that (the request line carries message ids).
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import json
import logging
import re
import resource
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mynabox.gateway.fhir import export
from mynabox.gateway.page import IndexEntry, entry_for, render_index, render_page
from mynabox.gateway.text import visible
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened
from mynabox.record import record

log = logging.getLogger("mynabox.gateway.pages")

MIB = 1024 * 1024
_DRAIN_S = 1.0  # how long a new connection at the cap waits for hung-up ones to close
_PAGE_PATH = re.compile(r"/m/([0-9a-f]{32})")
_FHIR_PATH = re.compile(r"/m/([0-9a-f]{32})\.fhir\.json")  # a summary as a FHIR R4 Bundle
# No script, no remote anything: the pages are plain HTML with one inline style sheet.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_OVERHEAD = 512  # bytes counted per page beyond its HTML (its list entry, the maps' slots)


@record
class _Stored:
    entry: IndexEntry
    html: bytes
    fhir: bytes | None = None  # summaries only

    @property
    def size(self) -> int:
        return len(self.html) + len(self.entry.title.encode("utf-8")) + _OVERHEAD


class PageStore:
    """Rendered pages by message id, oldest dropped first; ``clock`` is injected for the retention tests.

    Bounds: ``retention``, ``max_pages``, ``max_device_bytes`` per sending device and ``max_total_bytes`` in
    all. The page just added is never the one dropped (a page is at most a few MB: a message is ≤ 256 kB).
    """

    def __init__(
        self,
        *,
        retention: timedelta,
        max_pages: int = 500,
        max_device_bytes: int = 32 * MIB,
        max_total_bytes: int = 128 * MIB,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if retention <= timedelta(0) or max_pages < 1 or max_device_bytes < 1 or max_total_bytes < 1:
            raise ValueError("retention, max_pages and the byte budgets must be positive")
        self._retention = retention
        self._max = max_pages
        self._max_device = max_device_bytes
        self._max_total = max_total_bytes
        self._clock = clock
        self._pages: OrderedDict[str, _Stored] = OrderedDict()
        self._total = 0
        self._by_device: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def hours(self) -> float:
        return self._retention / timedelta(hours=1)

    def add(self, opened: Opened) -> None:
        """Render and keep one summary or card record (audit messages have no page)."""
        if opened.kind not in (Kind.SUMMARY, Kind.CARD_RECORD):
            return
        now = self._clock()
        fhir = None
        if opened.kind == Kind.SUMMARY:
            fhir = json.dumps(export(opened), ensure_ascii=False).encode("utf-8", "backslashreplace")
        stored = _Stored(entry_for(opened, now), render_page(opened).encode("utf-8"), fhir)
        with self._lock:
            self._drop(opened.message_id)
            self._pages[opened.message_id] = stored
            self._count(stored, +1)
            self._expire(now)
            sender = stored.entry.device_id
            device = self._evict(sender, lambda s: s.entry.device_id == sender)
            total = self._evict(None, lambda _s: True)
        if device or total:
            log.warning(
                "page store: dropped %d oldest page(s) (%d over %s's %d bytes, %d over %d in all)",
                device + total,
                device,
                visible(opened.device_id),
                self._max_device,
                total,
                self._max_total,
            )

    def page(self, message_id: str) -> bytes | None:
        with self._lock:
            self._expire(self._clock())
            stored = self._pages.get(message_id)
        return None if stored is None else stored.html

    def fhir(self, message_id: str) -> bytes | None:
        with self._lock:
            self._expire(self._clock())
            stored = self._pages.get(message_id)
        return None if stored is None else stored.fhir

    def index(self) -> bytes:
        with self._lock:
            self._expire(self._clock())
            entries = [s.entry for s in self._pages.values()]
        return render_index(entries, hours=self.hours).encode("utf-8")

    def bytes_held(self, device_id: str | None = None) -> int:
        with self._lock:
            return self._total if device_id is None else self._by_device.get(device_id, 0)

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._pages)

    def _count(self, stored: _Stored, sign: int) -> None:
        device = stored.entry.device_id
        self._total += sign * stored.size
        left = self._by_device.get(device, 0) + sign * stored.size
        if left:
            self._by_device[device] = left
        else:
            self._by_device.pop(device, None)

    def _drop(self, message_id: str) -> None:
        stored = self._pages.pop(message_id, None)
        if stored is not None:
            self._count(stored, -1)

    def _expire(self, now: datetime) -> None:
        cutoff = now - self._retention
        while self._pages:
            oldest_id, oldest = next(iter(self._pages.items()))
            if oldest.entry.received_at >= cutoff and len(self._pages) <= self._max:
                break
            self._drop(oldest_id)

    def _evict(self, device: str | None, matches: Callable[[_Stored], bool]) -> int:
        """Drops the oldest matching pages (never the newest page) while over the budget; returns how many."""
        budget = self._max_total if device is None else self._max_device

        def held() -> int:
            return self._total if device is None else self._by_device.get(device, 0)

        newest = next(reversed(self._pages))
        dropped = 0
        while held() > budget:
            victim = next((k for k, s in self._pages.items() if k != newest and matches(s)), None)
            if victim is None:
                break
            self._drop(victim)
            dropped += 1
        return dropped


@record
class ServerLimits:
    """What one client can hold of the page server."""

    max_connections: int = 32
    request_timeout_s: float = 10.0  # the request line and headers, from the connection's accept
    io_timeout_s: float = 10.0  # any one read or write (and the TLS handshake)
    lifetime_s: float = 60.0  # a connection's whole life, its answer included
    max_request_bytes: int = 16 * 1024  # request line and headers
    reserve_fds: int = 128  # descriptors left to the rest of the receiver (MQTT, SQLite, logs)


def connection_cap(limits: ServerLimits) -> int:
    """The connection cap within the descriptor limit (``RLIMIT_NOFILE``) less the receiver's reserve."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    cap = min(limits.max_connections, soft - limits.reserve_fds)
    if cap < 2:
        raise ValueError(f"{soft} descriptors leave no room beside the receiver's {limits.reserve_fds}")
    return cap


def server_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """TLS 1.2+ for the pages; with ``client_ca``, only clients with a certificate it signed get through."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(client_ca))
    return ctx


def host_names(listen: str, names: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` names the pages answer to: the listen address, ``localhost`` on loopback, and the names
    given (a DNS name an attacker's page rebinds to our address is not among them)."""
    allowed = {listen.lower(), *(n.lower().rstrip(".") for n in names)}
    try:
        loopback = ipaddress.ip_address(listen).is_loopback
    except ValueError:
        loopback = listen.lower() == "localhost"
    if loopback:
        allowed |= {"localhost", "127.0.0.1", "::1"}
    return frozenset(allowed)


def _host_allowed(header: str | None, allowed: frozenset[str], wildcard: bool) -> bool:
    if header is None:
        return False
    value = header.strip().lower()
    if value.startswith("["):
        host = value[1 : value.find("]")] if "]" in value else ""
    else:
        host = value.rpartition(":")[0] if ":" in value else value
    if host.rstrip(".") in allowed:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return wildcard  # listening on every address: any address of ours, but never a name not given


class _Notes:
    """Counts the limits that bit and logs each kind at most once per ``every`` seconds."""

    def __init__(self, every: float = 30.0) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def note(self, kind: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self._pending[kind] = self._pending.get(kind, 0) + 1
            if now - self._last.get(kind, -self._every) < self._every:
                return
            times = self._pending.pop(kind)
            self._last[kind] = now
        log.warning("page server: %s (%d time(s) since the last note)", kind, times)


class _TooLarge(Exception):
    pass


class _Capped:
    """The request's reader, refusing more than ``budget`` bytes of request line and headers."""

    def __init__(self, raw: io.BufferedIOBase, budget: int) -> None:
        self._raw = raw
        self._left = budget

    def readline(self, limit: int = -1) -> bytes:
        if self._left <= 0:
            raise _TooLarge
        line = self._raw.readline(self._left if limit < 0 else min(limit, self._left))
        self._left -= len(line)
        return line

    def read(self, size: int = -1) -> bytes:
        raise _TooLarge  # a GET has no body

    def close(self) -> None:
        self._raw.close()


def _hang_up(sock: socket.socket) -> None:
    """Ends a connection another thread is blocked on (its read returns; that thread closes it)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: not an SSLSocket's unwrap


@dataclass
class _Conn:
    accepted: float
    answering: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mynabox-gateway"
    sys_version = ""

    def setup(self) -> None:
        limits = self.server.limits
        self.request.settimeout(limits.io_timeout_s)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # here, not in accept: a silent client must not stall the others
        super().setup()
        self.rfile = _Capped(self.rfile, limits.max_request_bytes)  # type: ignore[assignment]

    def parse_request(self) -> bool:
        # A connection hung up mid-request reads an end of file: what it sent is not a request to answer.
        return super().parse_request() and self.server.answering(self.request)

    def do_GET(self) -> None:
        if not _host_allowed(self.headers.get("Host"), self.server.hosts, self.server.wildcard):
            self.server.notes.note("refused a request for a Host not configured")
            self._send(HTTPStatus.MISDIRECTED_REQUEST, b"<!DOCTYPE html><title>421</title>")
            return
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(HTTPStatus.OK, self.server.store.index())
            return
        fhir = _FHIR_PATH.fullmatch(path)
        bundle = self.server.store.fhir(fhir.group(1)) if fhir else None
        if bundle is not None:
            self._send(HTTPStatus.OK, bundle, "application/fhir+json; charset=utf-8")
            return
        match = _PAGE_PATH.fullmatch(path)
        html = self.server.store.page(match.group(1)) if match else None
        if html is None:
            self._send(HTTPStatus.NOT_FOUND, "<!DOCTYPE html><title>404</title><p>ありません</p>".encode())
            return
        self._send(HTTPStatus.OK, html)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str = "text/html; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries message ids; the default handler prints it to stderr

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("page request: %s", code)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst of connections waits in the kernel, not here

    def __init__(
        self,
        address: tuple[str, int],
        store: PageStore,
        limits: ServerLimits,
        hosts: frozenset[str],
        tls: ssl.SSLContext | None,
    ) -> None:
        self.store = store
        self.limits = limits
        self.cap = connection_cap(limits)
        self.hosts = hosts
        self.wildcard = address[0] in ("0.0.0.0", "::", "")
        self.notes = _Notes()
        self._conns: dict[socket.socket, _Conn] = {}
        self._open = 0  # descriptors of accepted connections not yet closed (hung-up ones included)
        self._lock = threading.Condition()  # notified when a connection's descriptor is closed
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE):
                self.notes.note("out of descriptors: a connection waits")
                time.sleep(0.1)  # the listening socket stays readable: do not spin on it
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        """At the cap, a new connection takes the place of the oldest one that has sent no request (an idle
        or slow client); when every one is being answered, the new one is closed."""
        now = time.monotonic()
        victim: socket.socket | None = None
        refused = False
        with self._lock:
            self._open += 1
            if len(self._conns) >= self.cap:
                # Hung-up connections close as their threads notice (slower on a busy machine): wait a moment
                # for their descriptors rather than refuse the newcomer (the tablet) while they drain.
                self._lock.wait_for(lambda: self._open <= self.cap + 8, timeout=_DRAIN_S)
                waiting = [(c.accepted, s) for s, c in self._conns.items() if not c.answering]
                if waiting and self._open <= self.cap + 8:  # hung-up ones close at once; never many more
                    victim = min(waiting, key=lambda w: w[0])[1]
                    del self._conns[victim]
                else:
                    refused = True
            self._conns[request] = _Conn(now)
        if victim is not None:
            self.notes.note("connection cap reached: closed the oldest connection with no request")
            _hang_up(victim)
        if refused:
            self.notes.note("connection cap reached: refused a connection")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def answering(self, request: socket.socket) -> bool:
        """Marks a connection's request as complete; False if the connection was hung up meanwhile."""
        with self._lock:
            conn = self._conns.get(request)
            if conn is not None:
                conn.answering = True
            return conn is not None

    def service_actions(self) -> None:
        """Runs between accepts (every 0.5 s at most): ends connections past their deadlines."""
        now = time.monotonic()
        late: list[tuple[socket.socket, str]] = []
        with self._lock:
            for sock, conn in list(self._conns.items()):
                age = now - conn.accepted
                if not conn.answering and age > self.limits.request_timeout_s:
                    late.append((sock, "no request within the deadline: closed"))
                elif age > self.limits.lifetime_s:
                    late.append((sock, "connection past its lifetime: closed"))
                else:
                    continue
                del self._conns[sock]
        for sock, why in late:
            self.notes.note(why)
            _hang_up(sock)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._conns.pop(request, None)
            self._open -= 1
            self._lock.notify_all()
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up, timed out, sent too much or failed its handshake: no traceback on stderr.
        self.notes.note("a connection ended in an error")

    @property
    def open_connections(self) -> int:
        with self._lock:
            return self._open


class PageServer:
    """Serves a :class:`PageStore` over HTTP (or HTTPS with ``tls``) until :meth:`stop`."""

    def __init__(
        self,
        store: PageStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limits: ServerLimits | None = None,
        names: Iterable[str] = (),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._server = _Server((host, port), store, limits or ServerLimits(), host_names(host, names), tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="pages", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def cap(self) -> int:
        return self._server.cap

    @property
    def open_connections(self) -> int:
        return self._server.open_connections

    @property
    def notes(self) -> dict[str, int]:
        return dict(self._server.notes.counts)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()  # waits for serve_forever: never started, it would wait forever
        self._server.server_close()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
