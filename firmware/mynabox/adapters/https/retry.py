"""Bounded retries, and what a failed attempt means.

Retries are only for failures a second try can cure: connection refused/reset, timeouts and 5xx. A
certificate the server rejects, a 4xx or a malformed response is answered at once. All attempts together
stay within the lookup's limit: in a tunnel the mobile link swallows packets, every attempt would wait out
its full timeout, and the crew would watch 照会中 for half a minute instead of getting the card record out.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable

from mynabox.adapters.https.resolve import NameLookupTimeout
from mynabox.record import record
from mynabox.summary.port import LookupResult, Unavailable

log = logging.getLogger("mynabox.adapters.summary_client")
MAX_BACKOFF_S = 2.0


@record
class Retryable:
    """A failure a second try may cure."""

    reason: str


@record
class Stale:
    """The kept connection had been closed by the server before our request: not the service's failure."""

    reason: str


class TooLarge(Exception):
    """The response is larger than the client accepts."""


Verdict = Unavailable | Retryable | Stale
# What the network and the service can raise through http.client (ssl.SSLError is an OSError).
NETWORK_ERRORS = (OSError, http.client.HTTPException)


def classify(exc: BaseException, *, connecting: bool, stale: bool = False) -> Verdict | None:
    """What an exception of one attempt means, from its connect (`connecting`) or its exchange. `stale`: on a
    kept connection before any byte of the answer, where a closed connection is the server's idle close.
    None: not a failure of the network or the service (it propagates). Reasons name the failure, never data.
    """
    name = type(exc).__name__
    if isinstance(exc, NameLookupTimeout) and connecting:
        return Retryable("name lookup timed out")
    if isinstance(exc, socket.gaierror) and connecting:
        return Retryable(f"cannot resolve the service's name ({name})")
    if isinstance(exc, TooLarge):
        return Unavailable("response too large")
    if isinstance(exc, TimeoutError) and not connecting:
        return Retryable("timed out waiting for the service")
    if isinstance(exc, ssl.SSLError):
        return _tls(exc, connecting=connecting, stale=stale)
    if connecting and isinstance(exc, TimeoutError):
        return Retryable("connect timed out")
    if connecting and isinstance(exc, ConnectionRefusedError):
        return Retryable("connection refused")
    if isinstance(exc, ConnectionError | http.client.RemoteDisconnected) and not connecting:
        return Stale(f"connection lost ({name})") if stale else Retryable("connection lost")
    if isinstance(exc, http.client.HTTPException) and not connecting:
        return Unavailable(f"malformed HTTP response ({name})")
    if isinstance(exc, OSError):
        return Retryable(f"cannot connect ({name})" if connecting else f"network error ({name})")
    return None


def _tls(exc: BaseException, *, connecting: bool, stale: bool) -> Verdict | None:
    if connecting:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Unavailable("TLS: the service's certificate was not accepted")
        if isinstance(exc, ssl.SSLError):
            return Unavailable(f"TLS handshake failed ({exc.reason or 'unknown'})")
        return None
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError) and stale:
        return Stale(f"connection lost ({type(exc).__name__})")
    # With TLS 1.3 the server's verdict on our certificate arrives after the handshake.
    return Unavailable(f"TLS failed ({getattr(exc, 'reason', None) or 'unknown'})")


def with_retries(
    attempt: Callable[[float | None], LookupResult | Retryable],
    *,
    retries: int,
    backoff_s: float,
    limit_s: float | None,
    stopping: threading.Event,
    sleep: Callable[[float], None],
) -> LookupResult:
    """`attempt(end)` up to 1 + `retries` times while it is Retryable, with exponential back-off, all of it
    by `limit_s` (None: no limit) and not after `stopping` is set."""
    reason = "not attempted"
    end = None if limit_s is None else time.monotonic() + limit_s
    attempts = 0
    for number in range(retries + 1):
        if stopping.is_set():
            reason += ", the box is stopping"
            break
        if number:
            pause = min(backoff_s * 2 ** (number - 1), MAX_BACKOFF_S)
            if end is not None and time.monotonic() + pause >= end:
                reason += ", out of lookup time"
                break
            sleep(pause)
        attempts += 1
        outcome = attempt(end)
        if not isinstance(outcome, Retryable):
            return outcome
        reason = outcome.reason
        log.info("summary lookup attempt %d failed: %s", number + 1, reason)
    return Unavailable(f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''})")
