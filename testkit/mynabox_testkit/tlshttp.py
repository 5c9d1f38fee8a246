"""The test kit's HTTPS servers' common part (the reference service, the update server): a threading HTTP
server whose TLS handshake runs in the request's thread (the handler's `setup` does it: a stalled client
cannot block `accept()`), and which can hang up every kept-alive connection (their threads otherwise wait
for a next request and `server_close()` waits for them)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
