"""shellcheck over the image build's shell scripts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"


def shell_scripts() -> list[Path]:
    found = []
    for path in sorted(IMAGE_BUILD.rglob("*")):
        if path.is_file() and "cache" not in path.parts and "out" not in path.parts:
            with path.open("rb") as f:
                head = f.readline()
            if head.startswith(b"#!") and (b"sh" in head.split(b"/")[-1] or b"bash" in head):
                out = path
                found.append(out)
    return found


def test_there_are_scripts_to_check() -> None:
    names = {p.name for p in shell_scripts()}
    assert {"build", "grow-state", "customize.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(IMAGE_BUILD)))
def test_shellcheck_clean(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (scripts/install-deps.sh installs it)")
    done = subprocess.run(
        ["shellcheck", "--severity=warning", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout
