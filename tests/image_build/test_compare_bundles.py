"""image-build/lib/compare-bundles.py (check-reproducible's bundle part) on small bundles from make-bundle
--tree: two bundles of the same tree hold the same payload; a changed file, a changed manifest field, a
damaged hash tree, a slot image or card that is not the bundle's are named; an unreadable bundle is
refused."""

from __future__ import annotations

import lzma
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from update.conftest import Signer, make_signer

IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"
COMPARE = IMAGE_BUILD / "lib" / "compare-bundles.py"
MAKE_BUNDLE = IMAGE_BUILD / "make-bundle"
SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
pytestmark = pytest.mark.skipif(
    any(shutil.which(t, path=SBIN_PATH) is None for t in ("rauc", "mksquashfs", "unsquashfs", "debugfs")),
    reason="rauc, squashfs-tools or e2fsprogs missing (scripts/install-deps.sh installs them)",
)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return make_signer(tmp_path_factory.mktemp("pki"), "compare-bundles")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree") / "root"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "mynabox-release").write_text("slot root of a test bundle\n")
    # Random bytes do not compress: a payload of more than one 4 KiB block (RAUC's minimum).
    (tree / "etc" / "blob").write_bytes(random.Random(20).randbytes(300 * 1024))
    # Old times: reading the tree (mke2fs -d does) moves each atime, which mke2fs copies into the image.
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (1600000000, 1600000000))
    return tree


def bundle(signer: Signer, out: Path, *source: str, version: str = "0.3.0") -> Path:
    done = subprocess.run(
        [str(MAKE_BUNDLE), *source, "--cert", str(signer.cert), "--key", str(signer.key),
         "--keyring", str(signer.ca), "--version", version, "--build", "test", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def compare(*args: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["python3", str(COMPARE), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def differences(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split("differs: ", 1)[1] for line in done.stdout.splitlines() if "differs: " in line]


def test_two_bundles_of_one_tree_have_the_same_payload(tmp_path: Path, signer: Signer, tree: Path) -> None:
    one = bundle(signer, tmp_path / "one.raucb", "--tree", str(tree))
    two = bundle(signer, tmp_path / "two.raucb", "--tree", str(tree))
    assert one.read_bytes() != two.read_bytes()  # the salt and the signature
    done = compare(one, two)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "payload identical (" in done.stdout
    assert "signed manifest identical but [bundle] verity-hash, [bundle] verity-salt" in done.stdout
    assert "each hash tree is its payload's under its own salt" in done.stdout
    assert differences(done) == []


def test_a_changed_file_is_named(tmp_path: Path, signer: Signer, tree: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(tree, changed)
    (changed / "etc" / "mynabox-release").write_text("slot root of another bundle\n")
    os.utime(changed / "etc" / "mynabox-release", (1600000000, 1600000000))
    one = bundle(signer, tmp_path / "one.raucb", "--tree", str(tree))
    two = bundle(signer, tmp_path / "two.raucb", "--tree", str(changed))
    done = compare(one, two)
    assert done.returncode == 1, done.stdout + done.stderr
    found = differences(done)
    assert "payload entry rootfs.ext4" in found
    assert "  rootfs.ext4: etc/mynabox-release" in found
    assert not any("etc/blob" in line for line in found)
    assert any(line.startswith("manifest [image.rootfs] sha256: ") for line in found)


def test_a_changed_manifest_field_is_named(tmp_path: Path, signer: Signer, tree: Path) -> None:
    one = bundle(signer, tmp_path / "one.raucb", "--tree", str(tree))
    two = bundle(signer, tmp_path / "two.raucb", "--tree", str(tree), version="0.4.0")
    done = compare(one, two)
    assert done.returncode == 1
    assert "manifest [update] version: '0.3.0' vs '0.4.0'" in differences(done)


def test_a_damaged_hash_tree_is_named(tmp_path: Path, signer: Signer, tree: Path) -> None:
    one = bundle(signer, tmp_path / "one.raucb", "--tree", str(tree))
    data = bytearray(bundle(signer, tmp_path / "two.raucb", "--tree", str(tree)).read_bytes())
    squashfs = int.from_bytes(data[40:48], "little")
    data[(squashfs + 4095) // 4096 * 4096 + 10] ^= 0x01
    damaged = tmp_path / "damaged.raucb"
    damaged.write_bytes(bytes(data))
    done = compare(one, damaged)
    assert done.returncode == 1
    assert any(line.startswith("hash tree of damaged.raucb: ") for line in differences(done))
    assert "payload identical (" in done.stdout


def card_with(slot: bytes, path: Path) -> Path:
    """A card image as genimage lays it out (MBR, partition 2 at 4 MiB), xz-compressed when path says so."""
    start = 8192
    entry = bytes(8) + start.to_bytes(4, "little") + (len(slot) // 512).to_bytes(4, "little")
    mbr = bytearray(512)
    mbr[446 + 16 : 446 + 32] = entry
    mbr[510:512] = b"\x55\xaa"
    image = bytes(mbr) + bytes(start * 512 - 512) + slot + bytes(4096)
    path.write_bytes(lzma.compress(image, preset=0) if path.suffix == ".xz" else image)
    return path


def test_the_bundle_holds_the_slot_image_the_card_holds(tmp_path: Path, signer: Signer, tree: Path) -> None:
    root = tmp_path / "root-a.ext4"
    subprocess.run(
        ["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(root), "8M"],
        check=True, capture_output=True, timeout=60, env={"PATH": SBIN_PATH},
    )  # fmt: skip
    one = bundle(signer, tmp_path / "one.raucb", "--rootfs", str(root))
    two = bundle(signer, tmp_path / "two.raucb", "--rootfs", str(root))
    slot = root.read_bytes()
    card = card_with(slot, tmp_path / "card.img.xz")
    done = compare(one, two, "--slot-image", root, "--card", card)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "slot image in the bundle = root-a.ext4 (sha256 " in done.stdout
    assert "card card.img.xz partition 2 (slot A) = root-a.ext4" in done.stdout

    other = bytearray(slot)
    other[len(other) // 2] ^= 0x01
    done = compare(one, two, "--slot-image", root, "--card", card_with(bytes(other), tmp_path / "other.img"))
    assert done.returncode == 1
    assert [line.split(":")[0] for line in differences(done)] == ["card other.img partition 2 (slot A)"]

    (tmp_path / "not-the-slot.ext4").write_bytes(bytes(other))
    done = compare(one, two, "--slot-image", tmp_path / "not-the-slot.ext4")
    assert done.returncode == 1
    assert differences(done)[0].startswith("slot image: not-the-slot.ext4 ")


@pytest.mark.parametrize("keep", [0, 7, 5000])
def test_an_unreadable_bundle_is_refused(tmp_path: Path, signer: Signer, tree: Path, keep: int) -> None:
    one = bundle(signer, tmp_path / "one.raucb", "--tree", str(tree))
    cut = tmp_path / "cut.raucb"
    cut.write_bytes(one.read_bytes()[:keep])
    done = compare(one, cut)
    assert done.returncode == 2
    assert done.stderr.startswith("compare-bundles: cannot compare: ")
    assert "Traceback" not in done.stderr
