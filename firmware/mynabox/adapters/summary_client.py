"""The summary lookup over HTTPS with mutual TLS (docs/summary-api.openapi.yaml), on a kept-warm connection.

`lookup` never raises: every failure becomes `Unavailable(reason)` so that the box goes on to deliver a
sealed card record. Reasons name the failure (timeout, TLS, HTTP status, malformed response), never the
certificate or the response's content.

The pieces are in `mynabox.adapters.https` (http.client, like urllib3 on top of it, has no exchange
deadline, DNS deadline or TLS session reuse): connect and exchange keep to the lookup's limit whichever layer
reads (`budget`, `tls`), the name is resolved with a deadline and cached `dns_ttl_s` (`resolve`), a keeper
thread keeps one connection warm (`pool`, `keeper`), reconnects resume the TLS session while younger than
`session_max_s` (`tls`), and failures a second try can cure are retried, all within `limit_s` (`retry`).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mynabox.adapters.https.budget import left
from mynabox.adapters.https.connection import Connection
from mynabox.adapters.https.keeper import Keeper
from mynabox.adapters.https.pool import Pool
from mynabox.adapters.https.resolve import Addresses
from mynabox.adapters.https.retry import NETWORK_ERRORS, Retryable, Stale, TooLarge, classify, with_retries
from mynabox.adapters.https.tls import SummaryClientConfigError, context
from mynabox.summary.model import Summary, SummaryFormatError
from mynabox.summary.port import Found, LookupResult, NotRegistered, Unavailable

__all__ = ["HttpsSummaryClient", "SummaryClientConfigError"]
log = logging.getLogger(__name__)

LOOKUP_PATH = "/v1/summary-lookups"
HEALTH_PATH = "/v1/health"
MAX_RESPONSE_BYTES = 1024 * 1024
KEEPALIVE_S = 50.0  # below the 60 s idle timeout of common load balancers and carrier NATs' minutes
SESSION_MAX_S = 3600.0  # a resumed session's age at most, whatever the server's ticket says
DNS_TTL_S = 300.0
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "Accept-Encoding": "identity"}


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
            port = parts.port or 443
        except ValueError:
            raise SummaryClientConfigError("base_url has a bad port") from None
        bad_limit = limit_s is not None and limit_s <= 0
        bad_keep = keepalive_s is not None and keepalive_s <= 0
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_response_bytes <= 0 or bad_limit or bad_keep:
            raise SummaryClientConfigError("timeouts, retries, backoff and size limit must be positive")
        self._prefix = parts.path.rstrip("/")
        self._keepalive_s = keepalive_s
        self._context = context(
            Path(ca_file), Path(client_cert), Path(client_key), None if keepalive_s is None else session_max_s
        )
        addresses = Addresses(parts.hostname, port, dns_ttl_s if keepalive_s is not None else 0.0)
        self._pool = Pool(
            parts.hostname, port, context=self._context, addresses=addresses, keep=keepalive_s is not None
        )
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s or timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._limit_s = limit_s
        self._max_bytes = max_response_bytes
        self._sleep = sleep
        self._keeper: Keeper | None = None

    def start(self) -> None:
        """Connect now and keep the connection warm until `close()` (no-op for connection-per-lookup)."""
        if self._keepalive_s is None or self._keeper is not None:
            return
        self._keeper = Keeper(
            self._pool,
            keepalive_s=self._keepalive_s,
            connect_timeout_s=self._connect_timeout_s,
            timeout_s=self._timeout_s,
            ping=lambda conn, end: self._health_on(conn, end) is None,
        )
        self._keeper.start()

    def close(self) -> None:
        """Stop the keeper and end a lookup under way at once (it returns Unavailable, so its card record
        can still be queued before the daemon exits)."""
        self._pool.close()
        if self._keeper is not None:
            self._keeper.join(timeout=0.5)  # it may sit in a connect in a tunnel: it holds nothing to save
        else:
            self._pool.release()  # else the keeper's last act
        self._context.forget_session()

    def _health_on(self, conn: Connection, end: float) -> str | None:
        try:
            with conn.budget.until(end):
                conn.timeout = max(0.01, end - time.monotonic())
                conn.request("GET", self._prefix + HEALTH_PATH, headers=_HEADERS)
                response = conn.getresponse()
                response.read(4096)
                if response.length:  # what its Content-Length says is left
                    return "health answer too large"
                return None if response.status == 200 else f"HTTP {response.status}"
        except NETWORK_ERRORS as err:
            return f"{type(err).__name__}"

    def health(self) -> str | None:
        """One GET of the service's health endpoint with our client certificate: None when it answers 200."""
        end = time.monotonic() + self._connect_timeout_s + self._timeout_s
        conn = self._pool.checkout()
        try:
            if conn is None:
                conn = self._pool.connect(end)
        except NETWORK_ERRORS as err:
            self._pool.checkin(None, keep=False)
            return f"{type(err).__name__}"
        problem = self._health_on(conn, end)
        self._pool.checkin(conn, keep=problem is None)
        return problem

    # -- the lookup -----------------------------------------------------------------------------------

    def lookup(self, certificate: bytes) -> LookupResult:
        body = json.dumps({"certificate": base64.b64encode(certificate).decode("ascii")}).encode("ascii")
        return with_retries(
            lambda end: self._attempt_safely(body, end),
            retries=self._retries,
            backoff_s=self._backoff_s,
            limit_s=self._limit_s,
            stopping=self._pool.stopping,
            sleep=self._sleep,
        )

    def _attempt_safely(self, body: bytes, end: float | None) -> LookupResult | Retryable:
        try:
            outcome = self._attempt(body, end, warm=True)
            if isinstance(outcome, Stale):  # the server had closed the kept connection: once more, fresh
                outcome = self._attempt(body, end, warm=False)
            return Unavailable(outcome.reason) if isinstance(outcome, Stale) else outcome
        except Exception as exc:  # the port promises no exception escapes; the card record goes out instead
            log.warning("summary lookup: unexpected %s", type(exc).__name__)
            return Unavailable(f"internal error ({type(exc).__name__})")

    def _attempt(self, body: bytes, end: float | None, *, warm: bool) -> LookupResult | Retryable | Stale:
        conn = self._pool.checkout() if warm else None
        if not warm:
            self._pool.enter()
        reused = conn is not None
        keep = False
        try:
            if conn is None:
                connect_end = time.monotonic() + min(self._connect_timeout_s, left(end))
                try:
                    conn = self._pool.connect(connect_end, track=True)
                except Exception as exc:
                    verdict = classify(exc, connecting=True)
                    if verdict is None:
                        raise
                    return verdict
            exchange_end = time.monotonic() + min(self._timeout_s, left(end))
            self._pool.track(conn)
            with conn.budget.until(exchange_end):
                outcome = self._exchange(conn, body, exchange_end, reused=reused)
            keep = isinstance(outcome, Found | NotRegistered)
            return outcome
        finally:
            self._pool.untrack(conn)
            self._pool.checkin(conn, keep=keep)

    def _exchange(
        self, conn: Connection, body: bytes, end: float, *, reused: bool
    ) -> LookupResult | Retryable | Stale:
        started = False  # any byte of the answer arrived: a failure after it is no stale connection
        try:
            conn.timeout = max(0.01, end - time.monotonic())
            path = self._prefix + LOOKUP_PATH
            conn.request("POST", path, body=body, headers=_HEADERS)
            response = conn.getresponse()
            started = True
            status = response.status
            data = self._read_limited(response)
        except Exception as exc:
            verdict = classify(exc, connecting=False, stale=reused and not started)
            if verdict is None:
                raise
            return verdict
        if 500 <= status <= 599:
            return Retryable(f"service error HTTP {status}")
        return _interpret(status, data)

    def _read_limited(self, response: http.client.HTTPResponse) -> bytes:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self._max_bytes:
            raise TooLarge
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = response.read(min(65536, self._max_bytes + 1 - total))
            if not chunk:
                if response.length:  # the connection closed short of its Content-Length
                    raise http.client.IncompleteRead(b"", response.length)
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > self._max_bytes:
                raise TooLarge


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
