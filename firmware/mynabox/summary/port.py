"""The lookup port: certificate in, one of three outcomes out.

No public interface of the national service exists for third parties, so the box depends on this port
only. Adapters: `mynabox.adapters.summary_client.HttpsSummaryClient` (HTTPS + mTLS, the documented API in
docs/summary-api.openapi.yaml) and, in tests, the reference service behind it.
"""

from __future__ import annotations

from typing import Protocol

from mynabox.record import Signal, record
from mynabox.summary.model import Summary


@record
class Found:
    summary: Summary


class NotRegistered(Signal):
    """The card is valid but not registered for use as a health insurance card (マイナ保険証)."""


@record
class Unavailable:
    """The lookup failed; the box delivers a sealed card record instead so the receiver can retry.

    `reason` says what went wrong (timeout, TLS, HTTP status, malformed response) and never carries
    patient or certificate data: it goes into logs and the audit record.
    """

    reason: str


LookupResult = Found | NotRegistered | Unavailable


class SummaryLookup(Protocol):
    def lookup(self, certificate: bytes) -> LookupResult:
        """Look up the summary for a JPKI user-auth certificate (DER). Never raises."""
        ...
