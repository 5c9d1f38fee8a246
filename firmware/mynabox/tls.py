"""The one place that builds client TLS contexts (the MQTT link, the summary client, the gateway receiver,
and the config check, which builds them as the daemon will: so it lives outside the adapters).

Each verifies the server's chain against one CA file and its host name (``PROTOCOL_TLS_CLIENT``: required
certificate, ``check_hostname``), presents a client certificate, and speaks TLS 1.2 or later. No system CAs
are loaded and ``SSLKEYLOGFILE`` is not read: the box trusts its own CA only and never writes session keys.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal, TypeVar, overload

C = TypeVar("C", bound=ssl.SSLContext)


class TlsFilesError(Exception):
    """The CA file (``part`` "ca") or the client certificate/key pair ("cert") cannot be loaded. ``cause`` is
    OpenSSL's or the file system's error: it names a code or a file, never key material."""

    def __init__(self, part: Literal["ca", "cert"], cause: Exception) -> None:
        super().__init__(f"{part}: {type(cause).__name__}")
        self.part = part
        self.cause = cause


@overload
def client_context(ca: Path, cert: Path, key: Path, *, minimum: ssl.TLSVersion = ...) -> ssl.SSLContext: ...


@overload
def client_context(
    ca: Path, cert: Path, key: Path, *, minimum: ssl.TLSVersion = ..., context_class: type[C]
) -> C: ...


def client_context(
    ca: Path,
    cert: Path,
    key: Path,
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    context_class: type[ssl.SSLContext] = ssl.SSLContext,
) -> ssl.SSLContext:
    """A client context (of ``context_class``, a subclass of SSLContext); raises :class:`TlsFilesError` for
    unusable files."""
    ctx = context_class(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = minimum
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError, ValueError) as err:
        raise TlsFilesError("ca", err) from err
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError, ValueError) as err:
        raise TlsFilesError("cert", err) from err
    return ctx
