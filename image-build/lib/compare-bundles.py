"""Compares two RAUC verity bundles of the same root slot (check-reproducible makes one from each build's
root-a.ext4) in what must be identical, and names what differs.
  compare-bundles.py A.raucb B.raucb [--slot-image ROOT.ext4] [--card CARD.img[.xz]]

Must be identical: the payload (the squashfs holding the slot image: bit for bit), the signed manifest but
the two fields that follow from RAUC's random dm-verity salt (`verity-salt`, `verity-hash`: RAUC draws a salt
per bundle and has no option to fix it), and each hash tree must be the one its payload gives under its own
salt (then the trees differ by the salt alone). Not compared: the CMS signature (it holds its signing time,
and ECDSA draws a nonce per signature). With --slot-image: the slot image inside A (its bytes and the signed
manifest's sha256) is that file bit for bit; with --card: partition 2 (slot A) of the card image too.
When the payloads differ, the differing squashfs entries are named and, for a file system image among them,
the differing paths inside it (debugfs rdump; mode, owner, mtime, atime and content).
Exit 0: identical where required; 1: they differ; 2: a bundle or image could not be read."""

from __future__ import annotations

import argparse
import configparser
import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))
# The box's own reading of a bundle (pure, stdlib only): the host's python3 runs this without the venv.
from mynabox.update import verity

CHUNK = 1 << 20
SALTED = frozenset({("bundle", "verity-salt"), ("bundle", "verity-hash")})
SHOWN = 20
SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class Unreadable(Exception):
    """A bundle, slot image or card image that cannot be read as one."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    size: int
    manifest: dict[tuple[str, str], str]
    layout: verity.Layout
    signature: bytes


def read_bundle(path: Path) -> Bundle:
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(size - 8, 0))
            offset, length = verity.signature_span(size, f.read(8))
            f.seek(offset)
            signature = f.read(length)
        text = verity.signed_manifest(signature)
        layout = verity.layout(text, size, offset)
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(text)
    except (OSError, verity.VerityError, configparser.Error) as e:
        raise Unreadable(f"{path}: {e}") from None
    fields = {(s, k): v for s in parser.sections() for k, v in parser.items(s)}
    return Bundle(path, size, fields, layout, signature)


class Readable(Protocol):
    def seek(self, offset: int, /) -> object: ...
    def read(self, size: int, /) -> bytes: ...


def reader(f: Readable) -> Callable[[int, int], bytes]:
    def read(offset: int, size: int) -> bytes:
        f.seek(offset)
        return f.read(size)

    return read


def chunks(f: Readable, start: int, length: int) -> Iterator[bytes]:
    f.seek(start)  # an .xz reader seeks forward by decompressing
    while length > 0:
        block = f.read(min(CHUNK, length))
        if not block:
            raise Unreadable("a file ends early")
        length -= len(block)
        yield block


def sha256(blocks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()


def payload_sha256(bundle: Bundle) -> str:
    with bundle.path.open("rb") as f:
        return sha256(chunks(f, 0, bundle.layout.data_size))


def tree_matches(bundle: Bundle) -> str | None:
    """None when the stored hash tree is the payload's under the bundle's own salt, else why not."""
    with bundle.path.open("rb") as f:
        try:
            verity.verify(reader(f), bundle.layout)
        except verity.VerityError as e:
            return str(e)
    return None


def manifest_differences(a: Bundle, b: Bundle) -> tuple[list[str], list[str]]:
    """(the differing fields, the salted fields left out): the salt's two only when the salts differ."""
    skip = SALTED if a.layout.salt != b.layout.salt else frozenset()
    differ = []
    for key in sorted(set(a.manifest) | set(b.manifest)):
        if key not in skip and a.manifest.get(key) != b.manifest.get(key):
            differ.append(f"[{key[0]}] {key[1]}: {a.manifest.get(key)!r} vs {b.manifest.get(key)!r}")
    return differ, sorted(f"[{s}] {k}" for s, k in skip)


def signing_time(bundle: Bundle) -> str:
    """The CMS signing time as openssl prints it, or '?'."""
    done = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-noout", "-inform", "DER"],
        input=bundle.signature, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    lines = done.stdout.decode("ascii", "replace").splitlines()
    for i, line in enumerate(lines):
        if "signingTime" in line:
            for after in lines[i + 1 : i + 4]:
                if "UTCTIME" in after or "GENERALIZEDTIME" in after:
                    return after.split(":", 1)[1].strip()
    return "?"


def unsquash(bundle: Path, into: Path) -> None:
    done = subprocess.run(
        ["unsquashfs", "-q", "-n", "-no-xattrs", "-d", str(into), str(bundle)],
        capture_output=True, text=True, timeout=3600, check=False, env={"PATH": SBIN_PATH},
    )  # fmt: skip
    if done.returncode != 0:
        raise Unreadable(f"unsquashfs {bundle}: {done.stderr.strip()[-300:]}")


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under root: (type and mode, owner, group, mtime, atime, content's sha256 or link target).
    Top-down, each path's lstat comes before anything reads it (a read moves the atime)."""
    found: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory, name)
            st = path.lstat()
            if path.is_symlink():
                what = os.readlink(path)
            elif path.is_file():
                with path.open("rb") as f:
                    what = sha256(chunks(f, 0, st.st_size))
            else:
                what = ""
            times = (st.st_mtime_ns, st.st_atime_ns)
            found[str(path.relative_to(root))] = (oct(st.st_mode), st.st_uid, st.st_gid, *times, what)
    return found


def tree_differences(a: Path, b: Path) -> list[str]:
    one, two = describe(a), describe(b)
    return sorted(p for p in set(one) | set(two) if one.get(p) != two.get(p))


def is_ext4(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(1024 + 56)
        return f.read(2) == b"\x53\xef"


def rdump(image: Path, into: Path) -> None:
    into.mkdir()
    done = subprocess.run(
        ["debugfs", "-R", f'rdump / "{into}"', str(image)],
        capture_output=True, text=True, timeout=3600, check=False, env={"PATH": SBIN_PATH},
    )  # fmt: skip
    if done.returncode != 0:
        raise Unreadable(f"debugfs rdump {image}: {done.stderr.strip()[-300:]}")


def payload_differences(a: Bundle, b: Bundle, work: Path) -> list[str]:
    """The squashfs entries that differ and, inside a differing ext4 image, its differing paths."""
    unsquash(a.path, work / "a")
    unsquash(b.path, work / "b")
    lines = []
    for entry in tree_differences(work / "a", work / "b"):
        lines.append(f"payload entry {entry}")
        one, two = work / "a" / entry, work / "b" / entry
        if one.is_file() and two.is_file() and is_ext4(one) and is_ext4(two):
            rdump(one, work / "ra")
            rdump(two, work / "rb")
            inside = tree_differences(work / "ra", work / "rb")
            lines += [f"  {entry}: {path}" for path in inside[:SHOWN]]
            if len(inside) > SHOWN:
                lines.append(f"  {entry}: … {len(inside) - SHOWN} more")
            if not inside:
                lines.append(f"  {entry}: no path's content, mode, owner or time differs (ctimes or layout)")
            shutil.rmtree(work / "ra")
            shutil.rmtree(work / "rb")
    return lines or ["payload bytes (every entry's content, mode, owner and times the same: squashfs layout)"]


def bundled_image_sha256(bundle: Bundle) -> tuple[str, str]:
    """(the signed manifest's sha256 of the slot image, the sha256 of the bytes unsquashfs gives for it)."""
    name = bundle.manifest.get(("image.rootfs", "filename"), "")
    if not name or "/" in name:
        raise Unreadable(f"{bundle.path}: the manifest names no slot image")
    with subprocess.Popen(
        ["unsquashfs", "-cat", str(bundle.path), name],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={"PATH": SBIN_PATH},
    ) as cat:  # fmt: skip
        out = cat.stdout
        assert out is not None
        got = sha256(iter(lambda: out.read(CHUNK), b""))
    if cat.returncode != 0:
        raise Unreadable(f"unsquashfs -cat {bundle.path} {name} failed")
    return bundle.manifest.get(("image.rootfs", "sha256"), ""), got


def card_slot_a_sha256(card: Path, length: int) -> str:
    """The sha256 of the first `length` bytes of the card image's partition 2 (MBR entry 2: slot A)."""
    try:
        with lzma.open(card, "rb") if card.suffix == ".xz" else card.open("rb") as f:
            mbr = f.read(512)
            if len(mbr) != 512 or mbr[510:512] != b"\x55\xaa":
                raise Unreadable(f"{card}: no MBR")
            entry = mbr[446 + 16 : 446 + 32]
            start, sectors = int.from_bytes(entry[8:12], "little"), int.from_bytes(entry[12:16], "little")
            if start == 0 or sectors * 512 < length:
                raise Unreadable(f"{card}: partition 2 is missing or smaller than the slot image")
            return sha256(chunks(f, start * 512, length))
    except (OSError, lzma.LZMAError, EOFError) as e:
        raise Unreadable(f"{card}: {e}") from None


def compare(a: Bundle, b: Bundle, slot_image: Path | None, card: Path | None) -> tuple[list[str], list[str]]:
    """(what was found the same, what differs)."""
    same, differ = [], []
    payload = payload_sha256(a)
    if a.layout.data_size == b.layout.data_size and payload == payload_sha256(b):
        same.append(f"payload identical ({a.layout.data_size} bytes of squashfs, sha256 {payload})")
    else:
        with tempfile.TemporaryDirectory(prefix="compare-bundles.") as work:
            differ += payload_differences(a, b, Path(work))
    for bundle in (a, b):
        why = tree_matches(bundle)
        if why is not None:
            differ.append(f"hash tree of {bundle.path.name}: {why}")
    fields, salted = manifest_differences(a, b)
    differ += [f"manifest {line}" for line in fields]
    if not fields:
        but = f" but {', '.join(salted)} (follow from RAUC's random salt)" if salted else ""
        same.append(f"signed manifest identical{but}")
    if not any(line.startswith("hash tree") for line in differ):
        same.append("each hash tree is its payload's under its own salt")
    same.append(
        f"signatures not compared: signing times {signing_time(a)} / {signing_time(b)}, ECDSA's random nonce"
    )
    if slot_image is not None:
        with slot_image.open("rb") as f:
            length = os.fstat(f.fileno()).st_size
            want = sha256(chunks(f, 0, length))
        signed, inside = bundled_image_sha256(a)
        if signed == inside == want:
            same.append(f"slot image in the bundle = {slot_image.name} (sha256 {want})")
        else:
            differ.append(
                f"slot image: {slot_image.name} {want}, in the bundle {inside}, its signed sha256 {signed}"
            )
        if card is not None:
            got = card_slot_a_sha256(card, length)
            if got == want:
                same.append(f"card {card.name} partition 2 (slot A) = {slot_image.name}")
            else:
                differ.append(f"card {card.name} partition 2 (slot A): {got}, {slot_image.name} {want}")
    return same, differ


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="compare-bundles.py", description=__doc__.split("\n", 1)[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--slot-image", type=Path)
    parser.add_argument("--card", type=Path)
    args = parser.parse_args(argv)
    if args.card is not None and args.slot_image is None:
        parser.error("--card needs --slot-image")
    try:
        same, differ = compare(read_bundle(args.a), read_bundle(args.b), args.slot_image, args.card)
    except (Unreadable, OSError) as e:
        print(f"compare-bundles: cannot compare: {e}", file=sys.stderr)
        return 2
    try:
        for line in same:
            print(f"compare-bundles: {line}")
        for line in differ:
            print(f"compare-bundles: differs: {line}")
        sys.stdout.flush()
    except BrokenPipeError:  # a reader that stopped early (| head): the verdict is still the exit status
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
