"""Advisory check of the JPKI user-authentication certificate against the J-LIS roots.

The national service is the authority: this result goes into the payload and the audit record and never
blocks a send. All CA generations share one DN, so the issuer is found by whose key verifies the
signature, not by name. Nothing from the subject appears in the result (see identity.py for the hash).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import NameOID

from mynabox.record import record

AUTH_OU = "JPKI for user authentication"


class CertStatus(enum.Enum):
    OK = "ok"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    UNTRUSTED = "untrusted"
    MALFORMED = "malformed"


@record
class Root:
    generation: str
    certificate: x509.Certificate


@record
class CertCheck:
    status: CertStatus
    issuer_generation: str | None
    not_before: datetime | None
    not_after: datetime | None
    clock_synced: bool
    is_auth_certificate: bool

    @property
    def validity_verified(self) -> bool:
        """Validity dates mean something only against a synced clock (a Pi has no RTC)."""
        return self.clock_synced and self.status is not CertStatus.MALFORMED

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "issuer_generation": self.issuer_generation,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "clock_synced": self.clock_synced,
            "is_auth_certificate": self.is_auth_certificate,
        }


class TrustStore:
    """The packaged J-LIS CA certificates, plus the test CA (in test mode only) and extra roots."""

    def __init__(self, roots: Sequence[Root]) -> None:
        self.roots = tuple(roots)

    @classmethod
    def jlis(cls, extra_roots: Sequence[bytes] = (), *, test_root: bool = False) -> TrustStore:
        """`test_root` adds the virtual card's test CA (data/jpki-test-ca.pem, the certificate only: the box
        needs neither the test keys nor the code that makes the test hierarchy)."""
        roots = [
            Root(
                entry.name.removesuffix(".pem").replace("_ca_", "-"),
                x509.load_pem_x509_certificate(entry.read_bytes()),
            )
            for entry in sorted(
                resources.files("mynabox").joinpath("data/jpki-ca").iterdir(), key=lambda e: e.name
            )
            if entry.name.endswith(".pem")
        ]
        if test_root:
            pem = resources.files("mynabox").joinpath("data/jpki-test-ca.pem").read_bytes()
            roots.append(Root("test", x509.load_pem_x509_certificate(pem)))
        roots += [Root("test", _load_any(pem)) for pem in extra_roots]
        return cls(roots)

    def issuer_of(self, cert: x509.Certificate) -> Root | None:
        for root in self.roots:
            try:
                cert.verify_directly_issued_by(root.certificate)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
            return root
        return None


def _load_any(data: bytes) -> x509.Certificate:
    """A root as PEM or DER; anything else is one ValueError (cryptography also raises InvalidVersion, which
    is not a ValueError: found by fuzzing)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except _PARSE_ERRORS:
        raise ValueError("trust root is not a PEM or DER certificate") from None


# What cryptography raises on a damaged certificate (found by fuzzing damaged DER in the tests): parsing
# is partly lazy, so attribute access can raise too.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def check_certificate(der: bytes, trust: TrustStore, *, now: datetime, clock_synced: bool) -> CertCheck:
    """Advisory verdict on a card's certificate; never raises for bad input (MALFORMED instead).

    `now` without a timezone is taken as UTC; with `clock_synced=False` the dates are reported but
    `validity_verified` is False.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        ous = [a.value for a in cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
        is_ca = _is_ca(cert)
    except _PARSE_ERRORS:
        return CertCheck(CertStatus.MALFORMED, None, None, None, clock_synced, False)
    # A CA certificate under the auth OU (e.g. the CA EF 000B served as 000A) is not a card's certificate.
    is_auth = AUTH_OU in ous and not is_ca
    root = trust.issuer_of(cert)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    if root is None:
        result = CertStatus.UNTRUSTED
    elif now < not_before:
        result = CertStatus.NOT_YET_VALID
    elif now > not_after:
        result = CertStatus.EXPIRED
    else:
        result = CertStatus.OK
    return CertCheck(result, root.generation if root else None, not_before, not_after, clock_synced, is_auth)
