"""Fails when the image's root tree holds any file of the test kit or any private key.

The test kit (testkit/: the virtual card, the synthetic patients, the reference service and the test JPKI
hierarchy's private keys) is for developers; a box in test mode trusts what those keys sign. A file counts as
the kit's by its path (a `mynabox_testkit` or `mynabox/testing` directory, the distribution's metadata) or by
its bytes (a copy of any file of testkit/mynabox_testkit, wherever it lies). A private key is any PEM block
whose label ends in PRIVATE KEY (PKCS#1, PKCS#8, SEC1, encrypted, OpenSSH), any whole-file DER private key
(PKCS#1, PKCS#8, encrypted PKCS#8, SEC1) or PKCS#12 store, and any file named like one (*.key, *.p12, *.pfx,
*.pk8, *.p8, ssh_host_*_key); compiled code (ELF, ar) is not searched for PEM blocks. The image must carry
none; bench images (--bench-ssh 1) carry OpenSSH's host keys on purpose (customize.sh).
  check-no-testkit.py ROOT [--kit DIR] [--bench-ssh 0|1]"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import re
import stat
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parents[2] / "testkit" / "mynabox_testkit"
KIT_PATH = re.compile(r"(^|/)(mynabox_testkit[^/]*|mynabox/testing)(/|$)")
# A PEM block: the BEGIN line, a body of base64 (and RFC 1421 headers), the END line with the same label.
PEM_KEY = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n){1,400}?-----END \1-----"
)
KEY_NAMES = ("*.key", "*.p12", "*.pfx", "*.pk8", "*.p8", "ssh_host_*_key")
BENCH_SSH_KEYS = "etc/ssh/ssh_host_*_key"
# ELF objects and static archives.
COMPILED = (b"\x7fELF", b"!<arch>\n")
# Whole-file DER: keys are small; larger files are read for PEM blocks only.
DER_MAX = 16 * 1024
# Object identifiers (DER contents) that open an encrypted PKCS#8 key and a PKCS#12 store's auth-safe.
PBES2 = bytes.fromhex("2a864886f70d01050d")
PKCS12_PBE = bytes.fromhex("2a864886f70d010c01")
PKCS7_DATA = bytes.fromhex("2a864886f70d010701")


def _tlv(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(tag, start of contents, end of contents) of the DER element at `at`, or None."""
    if at + 2 > len(data):
        return None
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or at + count > len(data):
            return None
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    end = at + length
    return (tag, at, end) if end <= len(data) else None


def is_der_key(data: bytes) -> bool:
    """A whole-file DER private key or PKCS#12 store (one SEQUENCE spanning the file)."""
    outer = _tlv(data, 0)
    if outer is None or outer[0] != 0x30 or outer[2] != len(data):
        return False
    first = _tlv(data, outer[1])
    if first is None:
        return False
    tag, start, end = first
    second = _tlv(data, end)
    if tag == 0x02 and second is not None:
        version, following = data[start:end], second[0]
        if version == b"\x00" and following in (0x30, 0x02):  # PKCS#8 (algorithm) or PKCS#1 RSA (modulus)
            return True
        if version == b"\x01" and following == 0x04:  # SEC1 EC private key
            return True
        if version == b"\x03" and following == 0x30:  # PKCS#12: version 3, then the PKCS#7 auth-safe
            return PKCS7_DATA in data[second[1] : second[1] + 16]
    if tag == 0x30:  # EncryptedPrivateKeyInfo: the algorithm (PBES2 or a PKCS#12 PBE), then the octets
        algorithm = data[start : start + 16]
        return second is not None and second[0] == 0x04 and (PBES2 in algorithm or PKCS12_PBE in algorithm)
    return False


def kit_digests(kit: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(kit.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.stat().st_size > 0:
            digests[hashlib.sha256(path.read_bytes()).hexdigest()] = str(path.relative_to(kit.parent))
    return digests


def offenders(root: Path, kit: Path, allowed: tuple[str, ...] = ()) -> list[str]:
    """Every file under ROOT that is the kit's or a private key, with why; ROOT-relative paths."""
    digests = kit_digests(kit) if kit.is_dir() else {}
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in sorted(dirnames):
            rel = (here / name).relative_to(root).as_posix()
            if KIT_PATH.search(rel):  # named once, not walked
                bad.append(f"{rel}: the test kit")
                dirnames.remove(name)
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(root).as_posix()
            if KIT_PATH.search(rel):
                bad.append(f"{rel}: the test kit")
                continue
            if not stat.S_ISREG(path.lstat().st_mode):
                continue
            if any(fnmatch.fnmatch(rel, pattern) for pattern in allowed):
                continue
            why = _why(path, name, digests)
            if why:
                bad.append(f"{rel}: {why}")
    return bad


def _why(path: Path, name: str, digests: dict[str, str]) -> str | None:
    data = path.read_bytes()
    copy = digests.get(hashlib.sha256(data).hexdigest()) if data else None
    if copy:
        return f"a copy of the test kit's {copy}"
    # Compiled code is not read for PEM blocks: libgnutls carries a self-test key for its GOST code.
    block = None if data.startswith(COMPILED) else PEM_KEY.search(data)
    if block:
        return f"a PEM {block.group(1).decode()} block"
    if len(data) <= DER_MAX and is_der_key(data):
        return "a DER private key"
    pattern = next((p for p in KEY_NAMES if fnmatch.fnmatch(name, p)), None)
    return f"named like a key file ({pattern})" if pattern else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="check-no-testkit.py", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--kit", type=Path, default=KIT, help="the test kit's package (default: the tree's)")
    parser.add_argument("--bench-ssh", choices=("0", "1"), default="0", help="1: allow OpenSSH's host keys")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"check-no-testkit: {args.root} is not a directory", file=sys.stderr)
        return 2
    if not args.kit.is_dir():  # without it, copies of the kit's files would go unseen
        print(f"check-no-testkit: the test kit {args.kit} is not a directory", file=sys.stderr)
        return 2
    allowed = (BENCH_SSH_KEYS,) if args.bench_ssh == "1" else ()
    bad = offenders(args.root, args.kit, allowed)
    for line in bad[:40]:
        print(f"check-no-testkit: {line}", file=sys.stderr)
    if bad:
        print(f"check-no-testkit: {len(bad)} such paths under {args.root}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
