"""`classify`: one verdict per exception the libraries raise during an attempt's connect or exchange, the
same reasons the client gave before the split; and the retry loop's bounds (back-off, limit, stop)."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading

import pytest

from mynabox.adapters.https.resolve import NameLookupTimeout
from mynabox.adapters.https.retry import Retryable, Stale, TooLarge, Verdict, classify, with_retries
from mynabox.summary.port import LookupResult, NotRegistered, Unavailable


def tls_error(cls: type[ssl.SSLError], reason: str) -> ssl.SSLError:
    exc = cls(1, "boom")
    exc.reason = reason  # what OpenSSL's errors carry
    return exc


CONNECT: list[tuple[BaseException, Verdict | None]] = [
    (NameLookupTimeout("svc"), Retryable("name lookup timed out")),
    (socket.gaierror(-2, "unknown"), Retryable("cannot resolve the service's name (gaierror)")),
    (ssl.SSLCertVerificationError(1, "bad"), Unavailable("TLS: the service's certificate was not accepted")),
    (tls_error(ssl.SSLError, "WRONG_VERSION"), Unavailable("TLS handshake failed (WRONG_VERSION)")),
    (TimeoutError(), Retryable("connect timed out")),
    (ConnectionRefusedError(), Retryable("connection refused")),
    (ConnectionResetError(), Retryable("cannot connect (ConnectionResetError)")),
    (OSError(), Retryable("cannot connect (OSError)")),
    (http.client.HTTPException(), None),  # never raised by a connect of ours: propagates
    (ValueError(), None),
]

EXCHANGE: list[tuple[BaseException, bool, Verdict | None]] = [
    (TooLarge(), False, Unavailable("response too large")),
    (TimeoutError(), False, Retryable("timed out waiting for the service")),
    (NameLookupTimeout("svc"), False, Retryable("timed out waiting for the service")),
    (tls_error(ssl.SSLEOFError, "EOF"), True, Stale("connection lost (SSLEOFError)")),
    (tls_error(ssl.SSLEOFError, "EOF"), False, Unavailable("TLS failed (EOF)")),
    (tls_error(ssl.SSLZeroReturnError, "ZERO"), True, Stale("connection lost (SSLZeroReturnError)")),
    (tls_error(ssl.SSLError, "CERTIFICATE_REQUIRED"), True, Unavailable("TLS failed (CERTIFICATE_REQUIRED)")),
    (tls_error(ssl.SSLError, "UNKNOWN_CA"), False, Unavailable("TLS failed (UNKNOWN_CA)")),
    (http.client.IncompleteRead(b"", 10), False, Unavailable("malformed HTTP response (IncompleteRead)")),
    (ConnectionResetError(), True, Stale("connection lost (ConnectionResetError)")),
    (ConnectionResetError(), False, Retryable("connection lost")),
    (http.client.RemoteDisconnected(), True, Stale("connection lost (RemoteDisconnected)")),
    (ConnectionRefusedError(), False, Retryable("connection lost")),
    (http.client.BadStatusLine("x"), False, Unavailable("malformed HTTP response (BadStatusLine)")),
    (http.client.LineTooLong("header line"), False, Unavailable("malformed HTTP response (LineTooLong)")),
    (OSError(), False, Retryable("network error (OSError)")),
    (socket.gaierror(), False, Retryable("network error (gaierror)")),
    (ValueError(), False, None),
]


@pytest.mark.parametrize(("exc", "verdict"), CONNECT, ids=lambda v: type(v).__name__)
def test_connect_failures(exc: BaseException, verdict: Verdict | None) -> None:
    assert classify(exc, connecting=True) == verdict


@pytest.mark.parametrize(("exc", "stale", "verdict"), EXCHANGE, ids=lambda v: type(v).__name__)
def test_exchange_failures(exc: BaseException, stale: bool, verdict: Verdict | None) -> None:
    assert classify(exc, connecting=False, stale=stale) == verdict


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_retries_back_off_and_name_the_last_failure() -> None:
    sleeps = Sleeps()
    outcomes = iter([Retryable("connection refused"), Retryable("service error HTTP 503"), NotRegistered()])
    result = with_retries(
        lambda end: next(outcomes),
        retries=2,
        backoff_s=0.2,
        limit_s=None,
        stopping=threading.Event(),
        sleep=sleeps,
    )
    assert result == NotRegistered()
    assert sleeps == [0.2, 0.4]
    failing = with_retries(
        lambda end: Retryable("connect timed out"),
        retries=5,
        backoff_s=1.0,
        limit_s=None,
        stopping=threading.Event(),
        sleep=sleeps,
    )
    assert failing == Unavailable("connect timed out (after 6 attempts)")
    assert sleeps[2:] == [1.0, 2.0, 2.0, 2.0, 2.0]  # the back-off stops growing at 2 s


def test_the_limit_and_the_stop_end_the_retries() -> None:
    def attempt(end: float | None) -> LookupResult | Retryable:
        return Retryable("timed out waiting for the service")

    stopping = threading.Event()
    out_of_time = with_retries(
        attempt, retries=3, backoff_s=1.0, limit_s=0.5, stopping=stopping, sleep=Sleeps()
    )
    assert out_of_time == Unavailable(
        "timed out waiting for the service, out of lookup time (after 1 attempt)"
    )
    stopping.set()
    stopped = with_retries(attempt, retries=3, backoff_s=0.0, limit_s=None, stopping=stopping, sleep=Sleeps())
    assert stopped == Unavailable("not attempted, the box is stopping (after 0 attempt)")
