"""image-build/check-reproducible on a small input: a deterministic build passes, one that leaks the build
time into a file fails and names that file."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
