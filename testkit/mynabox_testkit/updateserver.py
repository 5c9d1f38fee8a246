"""A fleet update server for tests: the bundles of one directory over HTTPS to the fleet's client certificates
only, with HTTP/1.1 range requests (RAUC's streaming reads a bundle in ranges), counting what it sends.

What a real update server must do for a box to stream (RAUC's streaming helper, curl): answer `Range:
bytes=A-B` with 206 and `Content-Range: bytes A-B/SIZE` (RAUC's first request is `bytes=0-3`, and it reads
the bundle's size from that header), keep connections alive, ask for the client certificate. A whole-file GET
(the box's fallback fetch) gets 200 and the file. `sent(name)` is the body bytes that went out for one file
(what crossed the link, without TLS and HTTP overhead), `requests(name)` how many GETs asked for it.

Hostile input: only plain file names in the directory are served (no path, no dot file: 404), a malformed or
multi-range header is answered with the whole file (RFC 9110 lets a server ignore Range), a range past the
end with 416; handshakes and reads run in the request's own thread under a timeout.

  with UpdateServer(directory, cert=..., key=..., client_ca=...) as server:
      server.url("good.raucb"); server.sent("good.raucb")
"""

from __future__ import annotations

import re
import socket
import ssl
import sys
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mynabox_testkit.tlshttp import ThreadedService, TlsHttpServer, server_context

IO_TIMEOUT_S = 60.0
CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mynabox-update-test"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(IO_TIMEOUT_S)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()  # in this request's thread, under the timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            self.server.log(format % args)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        name = unquote(urlsplit(self.path).path).removeprefix("/")
        path = self.server.root / name
        if not _NAME.fullmatch(name) or not path.is_file():
            self._empty(404)
            return
        size = path.stat().st_size
        start, end, partial = 0, size - 1, False
        wanted = self.headers.get("Range")
        if wanted is not None and (found := _RANGE.fullmatch(wanted.strip())) is not None:
            first, last = found.groups()
            if first:
                start, end, partial = int(first), min(int(last), size - 1) if last else size - 1, True
            elif last:  # the last N bytes
                start, partial = max(0, size - int(last)), True
            if partial and (start >= size or start > end):
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
        length = max(0, end - start + 1)
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", formatdate(path.stat().st_mtime, usegmt=True))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if body:
            self.server.count(name, 0, request=True)
            with path.open("rb") as f:
                f.seek(start)
                left = length
                while left > 0 and (chunk := f.read(min(CHUNK, left))):
                    # Counted before it goes: a client that has read it all may ask for the count at once.
                    self.server.count(name, len(chunk))
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _unsupported(self) -> None:
        self._empty(405)
        self.close_connection = True

    do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _unsupported  # noqa: N815


class _Server(TlsHttpServer):
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, root: Path, log: Any) -> None:
        super().__init__(address, _Handler, context)
        self.root = root
        self.log = log
        self.bytes: dict[str, int] = {}
        self.gets: dict[str, int] = {}

    def count(self, name: str, sent: int, *, request: bool = False) -> None:
        with self._lock:
            self.bytes[name] = self.bytes.get(name, 0) + sent
            self.gets[name] = self.gets.get(name, 0) + int(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (no client certificate, another CA), resets and timeouts.
        if self.log is not None:
            exc = sys.exc_info()[1]
            self.log(f"connection dropped: {type(exc).__name__ if exc else 'unknown'}")


class UpdateServer(ThreadedService):
    """Serves `root`'s files on `host` (0.0.0.0 for a qemu guest's 10.0.2.2); `port=0` picks a free port.
    `log` (optional) gets one line per request (no client names)."""

    thread_name = "update-server"
    _server: _Server

    def __init__(
        self,
        root: Path,
        *,
        cert: Path,
        key: Path,
        client_ca: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        log: Any = None,
    ) -> None:
        super().__init__(_Server((host, port), server_context(cert, key, client_ca), root, log))

    @property
    def server_address(self) -> tuple[str, int]:
        """(host, port), as http.server's servers name it."""
        return str(self._server.server_address[0]), self.port

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}/{name}"

    def sent(self, name: str) -> int:
        """Body bytes sent for `name` so far."""
        with self._server._lock:
            return self._server.bytes.get(name, 0)

    def requests(self, name: str) -> int:
        with self._server._lock:
            return self._server.gets.get(name, 0)
