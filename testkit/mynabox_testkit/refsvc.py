"""The reference summary service: the API of docs/summary-api.openapi.yaml over HTTPS with mutual TLS.

Backed by the synthetic patients. The patient is found by the subject CN of the JPKI user-auth certificate
in the request, which is the card's opaque ID. A real service would first verify the certificate against
the J-LIS CA and its revocation status; this one does not, because the test CA of the virtual card is not
J-LIS (documented in the OpenAPI file).

Hostile input gets a 4xx with a short JSON error and never a crash: body size limit (413), missing length
(411), bad JSON or certificate (400), unknown path (404), wrong method (405). Handshakes and reads run in
the request's own thread with a timeout, so a stalled client holds one thread, not the service.
Connections are kept alive (HTTP/1.1) for `idle_timeout_s` between requests, as a real service's load
balancer does; TLS 1.3 sessions can be resumed. `stats` counts connections and resumed handshakes.
Logs name the outcome and status only, never the CN or a patient.

In tests: `with ReferenceService(cert_file=..., key_file=..., client_ca_file=...) as svc: svc.base_url`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import socket
import ssl
import sys
from collections.abc import Callable
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from mynabox.summary.model import Summary
from mynabox.summary.port import Found, LookupResult, NotRegistered, Unavailable
from mynabox_testkit import patients
from mynabox_testkit.tlshttp import ThreadedService, TlsHttpServer, server_context

log = logging.getLogger(__name__)

LOOKUP_PATH = "/v1/summary-lookups"
HEALTH_PATH = "/v1/health"
MAX_BODY = 64 * 1024  # a JPKI certificate is about 1.5 kB; base64 and JSON keep it far below this
MAX_CERT = 16 * 1024
IO_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0  # a kept-alive connection with no request for this long is closed


class BadCertificate(ValueError):
    """The request's certificate is not usable (not base64, not DER X.509, no CN)."""


def card_id_of(certificate: bytes) -> str:
    """The subject CN of a DER certificate: the card's opaque ID."""
    if len(certificate) > MAX_CERT:
        raise BadCertificate("certificate too large")
    try:
        cert = x509.load_der_x509_certificate(certificate)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        raise BadCertificate("not a DER X.509 certificate") from None
    if len(cns) != 1 or not isinstance(cns[0].value, str) or not cns[0].value:
        raise BadCertificate("certificate subject has no single CN")
    return cns[0].value


def resolve(certificate: bytes, today: date) -> Summary | None:
    """The summary for this certificate on `today`; None when the card is unknown or not registered."""
    p = patients.by_card_id(card_id_of(certificate))
    return None if p is None else patients.summary_for(p, today)


class InProcessLookup:
    """The port served straight from the synthetic patients, without a network (for unit tests)."""

    def __init__(self, today: date | None = None) -> None:
        self._today = today

    def lookup(self, certificate: bytes) -> LookupResult:
        try:
            summary = resolve(certificate, self._today or date.today())
        except BadCertificate as exc:
            return Unavailable(f"rejected by the service: {exc}")
        return NotRegistered() if summary is None else Found(summary)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "mynabox-refsvc"
    sys_version = ""

    def setup(self) -> None:
        # The TLS handshake happens here, in this request's thread, under the I/O timeout.
        self.request.settimeout(IO_TIMEOUT_S)
        # Headers and body go out in two writes: without NODELAY, Nagle meets the peer's delayed ACK (40 ms).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()
        self.server.count(resumed=self.request.session_reused)
        super().setup()

    def handle_one_request(self) -> None:
        self.request.settimeout(self.server.idle_timeout_s)  # waiting for the next request on the connection
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.request.settimeout(IO_TIMEOUT_S)  # the request line is in: the rest comes at once
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the default logs the request line and client address; we log outcomes in _send

    def _send(self, status: int, body: dict[str, Any], *, close: bool = False) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        path = getattr(self, "path", "")
        shown = path if path in (LOOKUP_PATH, HEALTH_PATH) else "(other path)"
        log.info("%s %s -> %d %s", self.command or "-", shown, status, body.get("status"))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, header too long): JSON like ours, always with a status
        # line (it would answer an unparsable line as HTTP/0.9), and without echoing the client's bytes.
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        self._error(code, HTTPStatus(code).phrase, close=True)

    def _error(self, status: int, message: str, *, close: bool = False) -> None:
        self._send(status, {"status": "error", "error": message}, close=close)

    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            self._send(200, {"status": "ok"})
        elif self.path == LOOKUP_PATH:
            self._error(405, "use POST")
        else:
            self._error(404, "no such resource")

    def do_POST(self) -> None:
        if self.path != LOOKUP_PATH:
            self._error(404, "no such resource", close=True)
            return
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") is not None or length_header is None:
            self._error(411, "Content-Length required", close=True)
            return
        try:
            length = int(length_header)
        except ValueError:
            self._error(400, "bad Content-Length", close=True)
            return
        if length < 0:
            self._error(400, "bad Content-Length", close=True)
            return
        if length > MAX_BODY:
            self._error(413, f"body larger than {MAX_BODY} bytes", close=True)
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._error(400, "body shorter than Content-Length", close=True)
            return
        certificate = self._certificate(body)
        if certificate is None:
            return
        try:
            summary = resolve(certificate, self.server.today())
        except BadCertificate as exc:
            self._error(400, str(exc))
            return
        if summary is None:
            self._send(404, {"status": "not_registered"})
        else:
            self._send(200, {"status": "found", "summary": summary.to_json()})

    def _certificate(self, body: bytes) -> bytes | None:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            self._error(400, "body is not JSON")
            return None
        if (
            not isinstance(doc, dict)
            or set(doc) != {"certificate"}
            or not isinstance(doc["certificate"], str)
        ):
            self._error(400, 'expected {"certificate": "<base64 DER>"}')
            return None
        try:
            return base64.b64decode(doc["certificate"], validate=True)
        except (binascii.Error, ValueError):
            self._error(400, "certificate is not base64")
            return None

    def _unsupported(self) -> None:
        self._error(405, "method not allowed", close=True)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _unsupported  # noqa: N815 (http.server's names)


class _Server(TlsHttpServer):
    def __init__(
        self,
        address: tuple[str, int],
        context: ssl.SSLContext,
        today: Callable[[], date],
        idle_timeout_s: float,
    ) -> None:
        super().__init__(address, _Handler, context)
        self.today = today
        self.idle_timeout_s = idle_timeout_s
        self.stats = {"connections": 0, "resumed": 0}

    def count(self, *, resumed: bool) -> None:
        with self._lock:
            self.stats["connections"] += 1
            self.stats["resumed"] += int(resumed)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (no client certificate, wrong CA), resets and timeouts end up here.
        exc = sys.exc_info()[1]
        log.info("connection dropped: %s", type(exc).__name__ if exc else "unknown")


class ReferenceService(ThreadedService):
    """The service on 127.0.0.1; `port=0` picks a free port. `today=None` means the real date per request."""

    thread_name = "refsvc"
    _server: _Server

    def __init__(
        self,
        *,
        cert_file: Path | str,
        key_file: Path | str,
        client_ca_file: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        today: date | None = None,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        context = server_context(cert_file, key_file, client_ca_file)
        today_fn = (lambda: today) if today else date.today
        super().__init__(_Server((host, port), context, today_fn, idle_timeout_s))

    @property
    def stats(self) -> dict[str, int]:
        """Connections accepted (TLS handshakes done) and how many of them resumed a session."""
        return dict(self._server.stats)

    def hang_up_all(self) -> None:
        """Close every open connection, as a service restart or a load balancer's idle timeout does."""
        self._server.hang_up_all()

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        self._server.serve_forever(poll_interval=poll_interval)

    def shutdown(self) -> None:
        """Stop serving (from another thread than serve_forever's)."""
        self._server.shutdown()
