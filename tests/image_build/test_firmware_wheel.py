"""The firmware wheel the image installs (pyproject.toml, built as image-build/build does: `pip wheel
--no-deps`) holds no file of the test kit and no private key, and on its own, as on the box, the commands of
the test kit answer that it is not installed (exit 69) instead of failing on an import."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "image-build" / "lib" / "check-no-testkit.py"


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware wheel built from a copy of the tree (the build leaves nothing in the work tree)."""
    tree = tmp_path_factory.mktemp("tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for part in ("firmware", "testkit"):
        shutil.copytree(REPO / part, tree / part, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(tree)],
        check=True,
        timeout=600,
    )
    (wheel,) = out.glob("mynabox-*.whl")
    unpacked = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    return unpacked


def test_the_firmware_wheel_holds_no_test_kit_and_no_key(unpacked: Path) -> None:
    names = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*")}
    assert "mynabox/cli.py" in names
    assert "mynabox/data/jpki-test-ca.pem" in names  # the test CA's certificate: test mode trusts it
    assert not [n for n in names if "testing" in n or "testkit" in n]
    done = subprocess.run(
        [sys.executable, str(CHECK), str(unpacked)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["demo", "vcard", "refsvc", "devbox", "gateway-vectors"])
def test_without_the_test_kit_its_commands_say_so(unpacked: Path, command: str) -> None:
    # -S: no site-packages (the dev venv has the kit); the firmware wheel's files alone, as on the box.
    code = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r}); from mynabox.cli import main; sys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 69, done.stderr
    assert f"mynabox {command}: the test kit is not installed" in done.stderr
    assert "Traceback" not in done.stderr
