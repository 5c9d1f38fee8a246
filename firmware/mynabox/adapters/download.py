"""A bundle fetched from the fleet's update server over HTTPS with the box's client certificate.

The server is checked against the fleet's CA and its host name (mynabox.tls: no system CAs); the body is
bounded (`max_bytes`) and written to a temporary file beside `dest`, renamed only when complete: a cut
download never looks like a bundle. RAUC then checks the file's signature as any other's (the transport is
not what makes a bundle trusted).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from mynabox.tls import TlsFilesError, client_context

CHUNK = 256 * 1024


class DownloadError(Exception):
    """The bundle could not be fetched; the message says why."""


def fetch(
    url: str, dest: Path, *, ca: Path, cert: Path, key: Path, max_bytes: int, timeout_s: float = 60.0
) -> int:
    if not url.startswith("https://"):
        raise DownloadError("only https:// URLs are fetched")
    try:
        context = client_context(ca, cert, key)
    except TlsFilesError as err:
        raise DownloadError(f"the box's TLS files cannot be loaded ({err})") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    size = 0
    try:
        with (
            urllib.request.urlopen(url, context=context, timeout=timeout_s) as answer,  # noqa: S310 https only
            tmp.open("wb") as out,
        ):
            length = answer.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise DownloadError(f"the bundle is larger than {max_bytes} bytes")
            while chunk := answer.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadError(f"the bundle is larger than {max_bytes} bytes")
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"the update server answered {err.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"the bundle could not be fetched ({reason})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return size
