"""A hostile summary service for failure tests: a real TLS server (mutual TLS) that reads each request and
answers as a behaviour says — garbage, a hang-up, silence, or a response dripped one byte at a time.

`with HostileServer(pki, behaviour) as server: ... server.port`. Every connection runs in its own thread;
`stop()` ends the dripping behaviours (they watch `stopping`) and joins every thread.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from types import TracebackType

from mynabox_testkit.tlsfiles import TestPki

# (the connection, its number from 1, the server's stop flag)
Behaviour = Callable[[ssl.SSLSocket, int, threading.Event], None]


class HostileServer:
    def __init__(self, pki: TestPki, behaviour: Behaviour, *, keep_alive: bool = False) -> None:
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(pki.server_cert, pki.server_key)
        self._ctx.load_verify_locations(pki.ca_cert)
        self._ctx.verify_mode = ssl.CERT_REQUIRED
        self._behaviour = behaviour
        self._keep_alive = keep_alive  # answer every request on a connection, not only its first
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self.requests: list[bytes] = []  # each request's head (request line and headers)
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="hostile-accept")
        self._accept.start()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._handle, args=(conn, self.connections), name="hostile-conn")
            t.start()
            self._threads.append(t)

    def _handle(self, conn: socket.socket, number: int) -> None:
        try:
            conn.settimeout(5)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._ctx.wrap_socket(conn, server_side=True) as tls:
                pending = b""
                while not self.stopping.is_set():
                    request, pending = _read_request(tls, pending)
                    if request is None:
                        return
                    self.requests.append(request)
                    self._behaviour(tls, number, self.stopping)
                    if not self._keep_alive:
                        return
        except OSError:
            pass  # the client gave up or the test is over
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self._accept.join(timeout=10)
        for t in self._threads:
            t.join(timeout=10)
        self._listener.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _read_request(tls: ssl.SSLSocket, data: bytes) -> tuple[bytes | None, bytes]:
    """One request's head (its body read and dropped); None when the client closed."""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        chunk = tls.recv(4096)
        if not chunk:
            return None, b""
        rest += chunk
    return head, rest[length:]


def http(status: int, body: bytes, *, headers: str = "") -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + headers + "\r\n").encode() + body


def answer(response: bytes) -> Behaviour:
    def behave(tls: ssl.SSLSocket, number: int, stopping: threading.Event) -> None:
        tls.sendall(response)

    return behave


def drip(prefix: bytes, byte: bytes = b"a", *, every_s: float = 0.2, for_s: float = 30.0) -> Behaviour:
    """Send `prefix` at once, then one `byte` every `every_s` seconds for `for_s` seconds (or until the
    server stops): each byte arrives well within any socket timeout, so only a deadline over the whole
    exchange ends it."""

    def behave(tls: ssl.SSLSocket, number: int, stopping: threading.Event) -> None:
        tls.sendall(prefix)
        until = time.monotonic() + for_s
        while time.monotonic() < until and not stopping.wait(every_s):
            with contextlib.suppress(BlockingIOError):
                tls.sendall(byte)

    return behave


# Where a response can be dripped, each a prefix that leaves the client waiting for the rest of a line or
# of the body: the status line, a header, a chunk-size line, a trailer, the body.
CHUNKED = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
DRIP_PLACES: dict[str, tuple[bytes, bytes]] = {
    "status line": (b"HTTP/1.1 200 ", b"O"),
    "headers": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: ", b"a"),
    "chunk-size line": ((CHUNKED + "2\r\n{}\r\n1").encode(), b"0"),
    "trailers": ((CHUNKED + "2\r\n{}\r\n0\r\nX-Trailer: ").encode(), b"a"),
    "body": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", b" "),
}
