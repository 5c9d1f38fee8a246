"""The test kit's HTTPS servers' common part (the reference service, the update server): the TLS context
(client certificates required), a threading HTTP server whose TLS handshake runs in the request's thread
(the handler's `setup` does it: a stalled client cannot block `accept()`) and which can hang up every
kept-alive connection (their threads otherwise wait for a next request and `server_close()` waits for
them), and the service that runs it in a thread of its own."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self


def server_context(cert_file: Path | str, key_file: Path | str, client_ca_file: Path | str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cafile=client_ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TlsHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext
    ) -> None:
        super().__init__(address, handler)
        self._context = context
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        tls = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            self._live.add(tls)
        return tls, addr

    def close_request(self, request: Any) -> None:
        with self._lock:
            self._live.discard(request)
        super().close_request(request)

    def hang_up_all(self) -> None:
        """End every kept-alive connection."""
        with self._lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: no TLS state touched


class ThreadedService:
    """A TlsHttpServer served from a daemon thread: `with Service(...) as service:` or start()/stop()."""

    thread_name = "https"

    def __init__(self, server: TlsHttpServer) -> None:
        self._server = server
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Self:
        # A short poll interval makes stop() quick in tests.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.hang_up_all()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
