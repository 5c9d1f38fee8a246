"""A RAUC verity bundle's payload checked whole before installing, as dm-verity would check it block by block.

A verity bundle is the squashfs payload (4 KiB blocks), its dm-verity hash tree, the CMS signature and the
signature's size (8 bytes, big endian). The signed manifest inside the CMS holds the tree's root hash, salt
and size. `rauc info` checks the signature only, so a damaged payload byte is found by dm-verity while
`rauc install` reads the image, with slot B already partly overwritten. Checking the tree here
first refuses such a bundle with nothing changed. The tree is dm-verity's format 1 as RAUC writes it:
SHA-256 of salt + block, 128 digests per 4 KiB hash block, the top level first.

Pure: bytes come through `read(offset, size)`.
"""

from __future__ import annotations

import configparser
import hashlib
from collections.abc import Callable

from mynabox.record import record

BLOCK = 4096
DIGEST = 32
PER_BLOCK = BLOCK // DIGEST
MAX_SIGNATURE = 1 << 20
_OID_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")  # 1.2.840.113549.1.7.2


class VerityError(Exception):
    """The bundle's layout, signed manifest or payload does not hold together."""


@record
class Layout:
    data_size: int
    hash_size: int
    root_hash: bytes
    salt: bytes


def signature_span(bundle_size: int, tail: bytes) -> tuple[int, int]:
    """(offset, size) of the CMS signature, from the bundle's last 8 bytes."""
    if len(tail) != 8 or bundle_size < 8:
        raise VerityError("bundle too short for a signature")
    size = int.from_bytes(tail, "big")
    if size == 0 or size > MAX_SIGNATURE or size > bundle_size - 8:
        raise VerityError("bundle's signature size is out of range")
    return bundle_size - 8 - size, size


def signed_manifest(cms: bytes) -> str:
    """The manifest a CMS SignedData carries inline (DER, as RAUC writes it)."""
    content_info, _ = _tlv(cms, 0, 0x30)
    oid, at = _tlv(cms, content_info[0], 0x06)
    if cms[oid[0] : oid[1]] != _OID_SIGNED_DATA:
        raise VerityError("signature is not CMS SignedData")
    explicit, _ = _tlv(cms, at, 0xA0)
    signed_data, _ = _tlv(cms, explicit[0], 0x30)
    _, at = _tlv(cms, signed_data[0], 0x02)  # version
    _, at = _tlv(cms, at, 0x31)  # digestAlgorithms
    encap, _ = _tlv(cms, at, 0x30)
    _, at = _tlv(cms, encap[0], 0x06)  # eContentType
    econtent, _ = _tlv(cms, at, 0xA0)
    octets, _ = _tlv(cms, econtent[0], 0x04)
    try:
        return cms[octets[0] : octets[1]].decode("utf-8")
    except UnicodeDecodeError:
        raise VerityError("signed manifest is not UTF-8") from None


def layout(manifest: str, bundle_size: int, signature_offset: int) -> Layout:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(manifest)
        fmt = parser.get("bundle", "format")
        root, salt = (
            bytes.fromhex(parser.get("bundle", "verity-hash")),
            bytes.fromhex(parser.get("bundle", "verity-salt")),
        )
        hash_size = int(parser.get("bundle", "verity-size"))
    except (configparser.Error, ValueError):
        raise VerityError("signed manifest has no readable verity parameters") from None
    if fmt != "verity" or len(root) != DIGEST or not salt or len(salt) > 256:
        raise VerityError("signed manifest is not a verity bundle's")
    data_size = signature_offset - hash_size
    if hash_size <= 0 or data_size <= 0 or data_size % BLOCK or hash_size % BLOCK:
        raise VerityError("bundle's size does not match its signed verity layout (truncated or padded?)")
    if hash_size != tree_size(data_size // BLOCK) * BLOCK:
        raise VerityError("signed hash tree size does not fit the payload")
    return Layout(data_size, hash_size, root, salt)


def tree_size(data_blocks: int) -> int:
    """Hash blocks dm-verity needs for `data_blocks` data blocks."""
    total, count = 0, data_blocks
    while True:
        count = -(-count // PER_BLOCK)
        total += count
        if count == 1:
            return total


def tree(read: Callable[[int, int], bytes], data_size: int, salt: bytes) -> tuple[bytes, bytes]:
    """(the hash tree as stored after the payload, its root hash) for the payload's `data_size` bytes."""
    digests = []
    for offset in range(0, data_size, BLOCK):
        block = read(offset, BLOCK)
        if len(block) != BLOCK:
            raise VerityError("bundle ends inside its payload")
        digests.append(hashlib.sha256(salt + block).digest())
    levels: list[list[bytes]] = []
    while True:
        blocks = [
            b"".join(digests[i : i + PER_BLOCK]).ljust(BLOCK, b"\0")
            for i in range(0, len(digests), PER_BLOCK)
        ]
        levels.append(blocks)
        if len(blocks) == 1:
            break
        digests = [hashlib.sha256(salt + b).digest() for b in blocks]
    return b"".join(b for level in reversed(levels) for b in level), hashlib.sha256(
        salt + levels[-1][0]
    ).digest()


def verify(read: Callable[[int, int], bytes], lay: Layout) -> None:
    """Recompute the tree from the payload: it must equal the stored tree, and its root the signed one."""
    computed, root = tree(read, lay.data_size, lay.salt)
    if read(lay.data_size, lay.hash_size) != computed:
        raise VerityError("payload or hash tree damaged: the bundle's blocks do not match its hash tree")
    if root != lay.root_hash:
        raise VerityError("hash tree does not match the signed root hash")


def _tlv(data: bytes, at: int, tag: int) -> tuple[tuple[int, int], int]:
    """One DER element with `tag` at `at`: ((content start, content end), offset after it)."""
    if at + 2 > len(data) or data[at] != tag:
        raise VerityError("signature is not the DER CMS RAUC writes")
    length, at = data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or at + count > len(data):
            raise VerityError("signature uses lengths RAUC does not write")
        length, at = int.from_bytes(data[at : at + count], "big"), at + count
    if at + length > len(data):
        raise VerityError("signature is truncated")
    return (at, at + length), at + length
