"""The summary lookup over HTTPS with mutual TLS (docs/summary-api.openapi.yaml).

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
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mynabox.summary.model import Summary, SummaryFormatError
from mynabox.summary.port import Found, LookupResult, NotRegistered, Unavailable

log = logging.getLogger(__name__)

LOOKUP_PATH = "/v1/summary-lookups"
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_BACKOFF_S = 2.0


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


def _connect_any(
    addresses: list[Address],
    _address: tuple[str, int],
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """http.client's connection factory, given the addresses resolved beforehand: the first that answers."""
    error: OSError = OSError("the name has no address")
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class _Connection(http.client.HTTPSConnection):
    """Connects to addresses resolved with a deadline; SNI and the certificate check still use the name."""

    def __init__(
        self,
        host: str,
        port: int,
        addresses: list[Address],
        *,
        context: ssl.SSLContext,
        timeout: float,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._create_connection = partial(_connect_any, addresses)


_DEADLINE = threading.local()  # .end: monotonic time the calling thread's network I/O must end by


@contextmanager
def _until(end: float) -> Iterator[None]:
    """Every TLS operation of this thread in the block ends by `end` (monotonic) or raises TimeoutError."""
    previous = getattr(_DEADLINE, "end", None)
    _DEADLINE.end = end if previous is None else min(end, previous)
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


def _context(ca_file: Path, client_cert: Path, client_key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the server's chain and host name
    ctx.sslsocket_class = _DeadlineSocket
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise SummaryClientConfigError(
            f"cannot load the service CA from {ca_file}: {exc.strerror or exc}"
        ) from None
    try:
        ctx.load_cert_chain(str(client_cert), str(client_key))
    except (OSError, ssl.SSLError) as exc:
        # Never echo key material: name the files and the kind of failure only.
        raise SummaryClientConfigError(
            f"cannot load the client certificate {client_cert} / key {client_key}: {type(exc).__name__}"
        ) from None
    return ctx


class HttpsSummaryClient:
    """Implements `mynabox.summary.port.SummaryLookup`."""

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
        if timeout_s <= 0 or retries < 0 or backoff_s < 0 or max_response_bytes <= 0 or bad_limit:
            raise SummaryClientConfigError("timeouts, retries, backoff and size limit must be positive")
        self._host = parts.hostname
        self._path = parts.path.rstrip("/") + LOOKUP_PATH
        self._context = _context(Path(ca_file), Path(client_cert), Path(client_key))
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s or timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._limit_s = limit_s
        self._max_bytes = max_response_bytes
        self._sleep = sleep

    def health(self) -> str | None:
        """One GET of the service's health endpoint with our client certificate: None when it answers 200."""
        path = self._path.removesuffix(LOOKUP_PATH) + "/v1/health"
        try:
            addresses = _resolve(self._host, self._port, self._connect_timeout_s)
        except OSError as err:
            return f"{type(err).__name__}"
        conn = _Connection(
            self._host, self._port, addresses, context=self._context, timeout=self._connect_timeout_s
        )
        try:
            with _until(time.monotonic() + self._connect_timeout_s + self._timeout_s):
                conn.request("GET", path)
                response = conn.getresponse()
                response.read(4096)
            return None if response.status == 200 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as err:
            return f"{type(err).__name__}"
        finally:
            conn.close()

    def lookup(self, certificate: bytes) -> LookupResult:
        body = json.dumps({"certificate": base64.b64encode(certificate).decode("ascii")}).encode("ascii")
        reason = "not attempted"
        end = None if self._limit_s is None else time.monotonic() + self._limit_s
        attempts = 0
        for attempt in range(self._retries + 1):
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
            return self._attempt(body, end)
        except Exception as exc:  # the port promises no exception escapes; the card record goes out instead
            log.warning("summary lookup: unexpected %s", type(exc).__name__)
            return Unavailable(f"internal error ({type(exc).__name__})")

    def _attempt(self, body: bytes, end: float | None) -> LookupResult | _Retryable:
        try:
            addresses = _resolve(self._host, self._port, min(self._connect_timeout_s, _left(end)))
        except NameLookupTimeout:
            return _Retryable("name lookup timed out")
        except OSError as exc:
            return _Retryable(f"cannot resolve the service's name ({type(exc).__name__})")
        connect_timeout = min(self._connect_timeout_s, _left(end))
        conn = _Connection(self._host, self._port, addresses, timeout=connect_timeout, context=self._context)
        try:
            try:
                with _until(time.monotonic() + connect_timeout):
                    conn.connect()
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
            timeout = min(self._timeout_s, _left(end))
            with _until(time.monotonic() + timeout):
                return self._exchange(conn, body, timeout)
        finally:
            conn.close()

    def _exchange(
        self, conn: http.client.HTTPSConnection, body: bytes, timeout: float
    ) -> LookupResult | _Retryable:
        deadline = time.monotonic() + timeout
        try:
            conn.request(
                "POST",
                self._path,
                body=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            response = conn.getresponse()
            status = response.status
            data = self._read_limited(response, deadline)
        except _TooLarge:
            return Unavailable("response too large")
        except TimeoutError:
            return _Retryable("timed out waiting for the service")
        except ssl.SSLError as exc:
            # With TLS 1.3 the server's verdict on our certificate arrives after the handshake.
            return Unavailable(f"TLS failed ({exc.reason or 'unknown'})")
        except (ConnectionError, http.client.RemoteDisconnected):
            return _Retryable("connection lost")
        except http.client.HTTPException as exc:
            return Unavailable(f"malformed HTTP response ({type(exc).__name__})")
        except OSError as exc:
            return _Retryable(f"network error ({type(exc).__name__})")
        if 500 <= status <= 599:
            return _Retryable(f"service error HTTP {status}")
        return _interpret(status, data)

    def _read_limited(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > self._max_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        total = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError
            # read1: at most one recv, so a server dripping bytes cannot hold us past the deadline.
            chunk = response.read1(min(65536, self._max_bytes + 1 - total))
            if not chunk:
                if response.length:  # the server closed before sending what it declared
                    raise http.client.IncompleteRead(b"".join(chunks), response.length)
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > self._max_bytes:
                raise _TooLarge


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
