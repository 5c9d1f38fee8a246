"""image-build/check-reproducible on a small input: a deterministic build passes, one that leaks the build
time into a file fails and names that file."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "image-build" / "check-reproducible"
# A miniature of the image build: a tree, its per-file hash list, and an archive of it.
BUILD = """
set -eu
mkdir -p "$OUT/tree/etc" "$OUT/tree/usr/lib"
echo fixed > "$OUT/tree/etc/config"
echo "{stamp}" > "$OUT/tree/usr/lib/stamp"
touch -d @1796147446 "$OUT"/tree/etc/config "$OUT"/tree/usr/lib/stamp
(cd "$OUT/tree" && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum) \\
  > "$OUT/image-files.sha256"
tar --sort=name --mtime=@1796147446 --owner=0 --group=0 --numeric-owner -C "$OUT/tree" -cf "$OUT/image.tar" .
rm -rf "$OUT/tree"
"""


def check(tmp_path: Path, stamp: str) -> subprocess.CompletedProcess[str]:
    build = tmp_path / "mini-build"
    build.write_text(BUILD.format(stamp=stamp))
    return subprocess.run(
        [str(SCRIPT), "--", "sh", str(build)], capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )  # fmt: skip


def test_identical_builds_pass(tmp_path: Path) -> None:
    done = check(tmp_path, "1.0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical (2 outputs)" in done.stdout


def test_a_build_time_leak_is_found_and_named(tmp_path: Path) -> None:
    done = check(tmp_path, "$(date +%s%N)")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "output: image.tar" in done.stdout
    paths = done.stdout.split("first differing paths in image-files.sha256:", 1)[1].split()
    assert paths == ["usr/lib/stamp"]


MKFS = SCRIPT.parent / "lib" / "mkfs.sh"
SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def small_trees(tmp_path: Path) -> Path:
    """The three trees lib/mkfs.sh takes, small; skips where the file system tools are missing."""
    for tool in ("mke2fs", "debugfs", "e2fsck", "mkfs.vfat", "mcopy"):
        if shutil.which(tool, path=SBIN_PATH) is None:
            pytest.skip(f"{tool} is not installed")
    trees = tmp_path / "trees"
    for rel, text in {"root/etc/hostname": "mynabox", "root/usr/lib/a b/c": "x", "boot/config.txt": "[all]",
                      "boot/overlays/o.dtbo": "o", "state/.keep": ""}.items():  # fmt: skip
        (trees / rel).parent.mkdir(parents=True, exist_ok=True)
        (trees / rel).write_text(text)
    return trees


def mkfs_argv(trees: Path, out: str) -> list[str]:
    """lib/mkfs.sh on the small trees, into OUT (a directory, or "$OUT" for check-reproducible)."""
    return ["sh", str(MKFS), *(str(trees / t) for t in ("root", "boot", "state")), out, "16M", "40M", "8M"]


# debugfs tries date formats on a bare number first: 1796213000 unless written "@1796213000" put every
# ctime in the year 2340 and failed the build's e2fsck.
@pytest.mark.parametrize("epoch", [1796147446, 1796213000])
def test_every_inode_time_is_the_source_date_epoch(tmp_path: Path, epoch: int) -> None:
    trees = small_trees(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        mkfs_argv(trees, str(out)),
        capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": SBIN_PATH, "TMPDIR": str(tmp_path), "SOURCE_DATE_EPOCH": str(epoch)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for path in ("/", "/etc/hostname", "/usr/lib/a b/c"):
        stat = subprocess.run(
            ["debugfs", "-R", f'stat "{path}"', str(out / "root-a.ext4")],
            capture_output=True, text=True, timeout=60, check=True, env={"PATH": SBIN_PATH},
        ).stdout  # fmt: skip
        times = dict(re.findall(r"^\s*(\w+): (0x[0-9a-f]+:[0-9a-f]+)", stat, re.MULTILINE))
        assert set(times) >= {"ctime", "atime", "mtime"}, stat
        assert all(value == f"0x{epoch:08x}:00000000" for value in times.values()), (path, times)


def test_the_card_file_systems_are_bit_identical(tmp_path: Path) -> None:
    """lib/mkfs.sh (the build's file system step) on a small tree, through check-reproducible: times,
    UUIDs, hash seeds and the FAT volume id are fixed, the inode ctimes mke2fs copies are reset."""
    trees = small_trees(tmp_path)
    argv = mkfs_argv(trees, "$OUT")
    env = {
        "PATH": SBIN_PATH,
        "TMPDIR": str(tmp_path),
        "SOURCE_DATE_EPOCH": "1796147446",
    }
    done = subprocess.run(
        [str(SCRIPT), "--no-bundle", "--", *argv],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "identical (3 outputs)" in done.stdout
    assert "bundle" not in done.stdout


# lib/mkfs.sh, then genimage with the build's own layout (genimage.cfg) and xz, as the build's image stage.
CARD_BUILD = """
set -eu
sh {mkfs} {trees}/root {trees}/boot {trees}/state "$OUT" 16M 40M 8M
mkdir "$OUT/.g" "$OUT/.g/none" "$OUT/.g/tmp"
sed "s|@ROOT_SIZE@|16M|g" {genimage_cfg} > "$OUT/.g/genimage.cfg"
genimage --config "$OUT/.g/genimage.cfg" --rootpath "$OUT/.g/none" --tmppath "$OUT/.g/tmp" \\
  --inputpath "$OUT" --outputpath "$OUT/.g" >/dev/null 2>&1
xz -0 -T1 -c "$OUT/.g/mynabox.img" > "$OUT/mynabox.img.xz"
rm -rf "$OUT/.g"
"""


def test_the_bundles_of_two_builds_differ_only_by_design(tmp_path: Path) -> None:
    """check-reproducible's bundle part on the card build in small: a bundle of each build's root-a.ext4,
    signed by its throwaway signer: the same payload and manifest but the salt's fields, and build 1's
    bundle holds slot A of its card image bit for bit."""
    for tool in ("rauc", "mksquashfs", "unsquashfs", "genimage", "xz", "openssl"):
        if shutil.which(tool, path=SBIN_PATH) is None:
            pytest.skip(f"{tool} is not installed")
    trees = small_trees(tmp_path)
    # Random bytes do not compress: RAUC wants a payload of more than one 4 KiB block.
    (trees / "root" / "etc" / "blob").write_bytes(random.Random(20).randbytes(100 * 1024))
    build = tmp_path / "card-build"
    build.write_text(CARD_BUILD.format(mkfs=MKFS, trees=trees, genimage_cfg=SCRIPT.parent / "genimage.cfg"))
    env = {"PATH": SBIN_PATH, "TMPDIR": str(tmp_path), "SOURCE_DATE_EPOCH": "1796147446"}
    done = subprocess.run(
        [str(SCRIPT), "--", "sh", str(build)],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "check-reproducible: identical (4 outputs)" in lines
    assert "check-reproducible: the bundles are the same where they must be" in lines
    assert any(line.startswith("  payload identical (") for line in lines)
    assert "  signed manifest identical but [bundle] verity-hash, [bundle] verity-salt" in "\n".join(lines)
    assert any(line.startswith("  slot image in the bundle = root-a.ext4 (sha256 ") for line in lines)
    assert "  card mynabox.img.xz partition 2 (slot A) = root-a.ext4" in lines
    assert not list(tmp_path.glob("mynabox-repro.*")), "the work directory (and the throwaway key) is left"
