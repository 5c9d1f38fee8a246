"""The day's pages, served to a tablet or a printer on a port the gateway chooses (loopback by default).

Pages hold patient data, so they live in memory only, for the retention the gateway sets, and at most
``max_pages`` of them: nothing is written to disk and a restart forgets them (the gateway's own store is the
record). The server logs status codes and nothing of the request beyond its route kind.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mynabox.gateway.fhir import export
from mynabox.gateway.page import JST, IndexEntry, entry_for, render_index, render_page
from mynabox.payload.envelope import Kind
from mynabox.payload.seal import Opened

log = logging.getLogger("mynabox.gateway.pages")

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


@dataclass(frozen=True)
class _Stored:
    entry: IndexEntry
    html: bytes
    fhir: bytes | None = None  # summaries only


class PageStore:
    """Rendered pages by message id, oldest dropped first; ``clock`` is injected for the retention tests."""

    def __init__(
        self,
        *,
        retention: timedelta,
        max_pages: int = 500,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if retention <= timedelta(0) or max_pages < 1:
            raise ValueError("retention must be positive and max_pages at least 1")
        self._retention = retention
        self._max = max_pages
        self._clock = clock
        self._pages: OrderedDict[str, _Stored] = OrderedDict()
        self._lock = threading.Lock()

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
            self._pages[opened.message_id] = stored
            self._pages.move_to_end(opened.message_id)
            self._expire(now)

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
        now = self._clock()
        today = now.astimezone(JST).date()
        with self._lock:
            self._expire(now)
            entries = [
                s.entry for s in self._pages.values() if s.entry.received_at.astimezone(JST).date() == today
            ]
        return render_index(entries, day=today).encode("utf-8")

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._pages)

    def _expire(self, now: datetime) -> None:
        cutoff = now - self._retention
        while self._pages:
            oldest_id, oldest = next(iter(self._pages.items()))
            if oldest.entry.received_at >= cutoff and len(self._pages) <= self._max:
                break
            del self._pages[oldest_id]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "mynabox-gateway"
    sys_version = ""

    def do_GET(self) -> None:
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

    def __init__(self, address: tuple[str, int], store: PageStore) -> None:
        self.store = store
        super().__init__(address, _Handler)


class PageServer:
    """Serves a :class:`PageStore` over HTTP until :meth:`stop`."""

    def __init__(self, store: PageStore, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), store)
        self._thread = threading.Thread(target=self._server.serve_forever, name="pages", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
