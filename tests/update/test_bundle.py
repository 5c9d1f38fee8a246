"""Signed verity bundles made by image-build/make-bundle with a throwaway CA, and what the box refuses:
RAUC's checks under the image's own system.conf (signature, signer's purpose) and ours (board, version)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from mynabox.cli import main
from mynabox.update import bundle

from .conftest import REPO, Signer, make_signer, system_conf_for_test

MAKE_BUNDLE = REPO / "image-build" / "make-bundle"
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("rauc", "mksquashfs", "mke2fs")),
    reason="rauc, squashfs-tools or e2fsprogs missing (scripts/install-deps.sh installs them)",
)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bundles")
    tree = work / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "mynabox-release").write_text("slot root of a test bundle\n")
    # Random bytes do not compress: a payload of > 128 blocks, so the hash tree has two levels.
    (tree / "etc" / "blob").write_bytes(random.Random(20).randbytes(700 * 1024))
    return work


def make(work: Path, signer: Signer, name: str, **opts: str) -> Path:
    out = work / f"{name}.raucb"
    if not out.exists():
        args = [
            str(MAKE_BUNDLE),
            "--tree",
            str(work / "tree"),
            "--cert",
            str(signer.cert),
            "--key",
            str(signer.key),
        ]
        for key, value in opts.items():
            args += [f"--{key}", value]
        subprocess.run([*args, "--out", str(out)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def conf(work: Path, signer: Signer) -> Path:
    box = work / "box"
    box.mkdir(exist_ok=True)
    return system_conf_for_test(box, signer.ca, box / "backend", (box / "a.img", box / "b.img"))


def check(bundle_path: Path, conf: Path, *extra: str) -> int:
    return main(
        ["update", "check-bundle", str(bundle_path), "--conf", str(conf), "--running", "0.2.0", *extra]
    )


def test_a_good_newer_bundle_is_accepted(
    work: Path, signer: Signer, conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make(work, signer, "good", version="0.3.0", build="test", keyring=str(signer.ca))
    assert check(good, conf) == 0
    assert "ok: update 0.2.0 -> 0.3.0 (mynabox-rpi-arm64, build test)" in capsys.readouterr().out
    info = json.loads(
        subprocess.run(
            ["rauc", "-c", str(conf), "info", "--output-format=json", str(good)],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    )
    assert info["images"][0]["rootfs"]["filename"] == "rootfs.ext4"


def test_bundles_are_adaptive(work: Path, signer: Signer, conf: Path) -> None:
    """The manifest asks for RAUC's block-hash-index and the payload carries it (SHA-256 of every 4 KiB
    block of the slot image): a streaming box reads only the blocks neither slot holds. Squashfs blocks of
    64 KiB: each block the box lacks costs at most one compressed squashfs block over the link."""
    good = make(work, signer, "good", version="0.3.0", build="test", keyring=str(signer.ca))
    info = json.loads(
        subprocess.run(
            ["rauc", "-c", str(conf), "info", "--output-format=json", str(good)],
            capture_output=True, check=True, timeout=60,
        ).stdout
    )  # fmt: skip
    image = info["images"][0]["rootfs"]
    assert image["adaptive"] == ["block-hash-index"]
    listing = subprocess.run(
        ["unsquashfs", "-l", "-d", "", str(good)], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "/rootfs.ext4.block-hash-index" in listing
    index = subprocess.run(
        ["unsquashfs", "-cat", str(good), "rootfs.ext4.block-hash-index"], capture_output=True, check=True,
        timeout=60,
    ).stdout  # fmt: skip
    assert len(index) == image["size"] // 4096 * 32
    superblock = good.read_bytes()[:96]
    assert int.from_bytes(superblock[12:16], "little") == 64 * 1024  # squashfs block_size


def test_the_payload_is_reproducible(work: Path, signer: Signer) -> None:
    """From the same root image (the build's, as --rootfs) two bundles hold the same squashfs: only RAUC's
    verity hash tree (its salt is random per bundle) and the signature (its signing time) differ."""
    root = work / "root.ext4"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(work / "tree"), str(root), "16M"], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    one = make(work, signer, "repro1", version="0.3.0", build="test", rootfs=str(root))
    two = make(work, signer, "repro2", version="0.3.0", build="test", rootfs=str(root))
    a, b = one.read_bytes(), two.read_bytes()
    assert a[:4] == b"hsqs"
    squashfs = int.from_bytes(a[40:48], "little")  # the superblock's bytes_used
    assert 0 < squashfs < len(a)
    assert a[:squashfs] == b[:squashfs]


def test_a_bundle_signed_by_another_ca_is_refused(
    work: Path, conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = make_signer(work / "stranger", "stranger")
    assert check(make(work, stranger, "other-ca", version="0.3.0"), conf) == 1
    err = capsys.readouterr().err
    assert "refused: RAUC refused it: signature verification failed" in err


def test_a_certificate_not_made_for_code_signing_is_refused(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fleet CA's certificate for something else (no codeSigning usage) cannot sign a bundle."""
    other_use = make_signer(work / "no-codesign", "no-codesign", codesign=False)
    box = work / "box-nocodesign"
    box.mkdir()
    conf = system_conf_for_test(box, other_use.ca, box / "backend", (box / "a.img", box / "b.img"))
    assert check(make(work, other_use, "no-codesign", version="0.3.0"), conf) == 1
    assert "unsuitable certificate purpose" in capsys.readouterr().err


@pytest.mark.parametrize("keep", [0, 100, 4096, -1, -8, -300])
def test_a_truncated_bundle_is_refused(
    work: Path, signer: Signer, conf: Path, keep: int, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make(work, signer, "good", version="0.3.0", build="test", keyring=str(signer.ca))
    data = good.read_bytes()
    cut = work / f"cut{keep}.raucb"
    cut.write_bytes(data[:keep] if keep >= 0 else data[: len(data) + keep])
    assert check(cut, conf) == 1
    assert "refused: RAUC refused it" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["payload", "hash-tree"])
def test_a_damaged_payload_is_refused_before_install(
    work: Path, signer: Signer, conf: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rauc info` passes a verity bundle with a damaged block (dm-verity would find it during the install);
    check-bundle reads the whole payload against the signed tree first."""
    big = make(work, signer, "big", version="0.3.0", keyring=str(signer.ca))
    data = bytearray(big.read_bytes())
    squashfs = int.from_bytes(data[40:48], "little")
    at = squashfs // 2 if where == "payload" else (squashfs + 4095) // 4096 * 4096 + 10
    data[at] ^= 0x01
    damaged = work / f"damaged-{where}.raucb"
    damaged.write_bytes(bytes(data))
    assert (
        subprocess.run(
            ["rauc", "-c", str(conf), "info", str(damaged)], capture_output=True, check=False
        ).returncode
        == 0
    )
    assert check(damaged, conf) == 1
    assert "do not match its hash tree" in capsys.readouterr().err


def test_another_boards_bundle_is_refused(
    work: Path, signer: Signer, conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make(work, signer, "other-board", version="0.3.0", compatible="mynabox-x86-test")
    assert check(other, conf) == 1
    assert "bundle is for 'mynabox-x86-test', this box is 'mynabox-rpi-arm64'" in capsys.readouterr().err


def test_an_older_bundle_is_refused_unless_forced(
    work: Path, signer: Signer, conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = make(work, signer, "old", version="0.1.9")
    assert check(old, conf) == 1
    assert "older than the running 0.2.0 (not forced)" in capsys.readouterr().err
    assert check(old, conf, "--force-older") == 0
    assert "downgrade (forced) 0.2.0 -> 0.1.9" in capsys.readouterr().out


def test_versions_and_info_are_read_strictly() -> None:
    assert bundle.version_key("0.10.0") > bundle.version_key("0.9.9")
    assert bundle.version_key("1") == bundle.version_key("1.0.0.0")
    for bad in ("", "1.0.0-rc1", "v1", "01.2", "1..2", "1.2.3.4.5", "9" * 7, "1.0\n"):
        with pytest.raises(bundle.BundleRefused):
            bundle.version_key(bad)
    for text in ("", "[]", '{"compatible": 1, "version": "1"}', '{"compatible": "x"}', "[" * 50000):
        with pytest.raises(bundle.BundleRefused):
            bundle.parse_info(text)
    info = bundle.parse_info('{"compatible": "b", "version": "1.2", "build": null}')
    assert bundle.check(info, compatible="b", running="1.2") == "reinstall of 1.2"
