"""Just enough DER to learn how long an object is from its first bytes."""

from __future__ import annotations

from mynabox.card.errors import MalformedResponse

# A JPKI certificate is ~1.3 KB; anything this large is a lying header, not a certificate.
MAX_OBJECT = 16 * 1024


def der_header(buf: bytes) -> tuple[int, int]:
    """Return (header length, content length) of the DER object at the start of `buf`.

    Raises MalformedResponse when the header is truncated, indefinite, multi-byte-tagged or absurd.
    """
    if len(buf) < 2:
        raise MalformedResponse("DER header truncated")
    if buf[0] & 0x1F == 0x1F:
        raise MalformedResponse("DER high tag numbers are not expected here")
    first = buf[1]
    if first < 0x80:
        return 2, first
    count = first & 0x7F
    if count == 0:
        raise MalformedResponse("indefinite DER length")
    if count > 3:
        raise MalformedResponse("DER length field too long")
    if len(buf) < 2 + count:
        raise MalformedResponse("DER header truncated")
    length = int.from_bytes(buf[2 : 2 + count], "big")
    if length > MAX_OBJECT:
        raise MalformedResponse(f"DER length {length} exceeds {MAX_OBJECT}")
    return 2 + count, length


def der_header_size(buf: bytes) -> int:
    """How many bytes the header at the start of `buf` occupies, as far as its first bytes tell.

    Lets a reader that got only a few bytes know whether to ask for more before `der_header`.
    """
    if len(buf) < 2 or buf[1] < 0x80:
        return 2
    return 2 + min(buf[1] & 0x7F, 4)


def der_total_length(buf: bytes) -> int:
    header, content = der_header(buf)
    return header + content
