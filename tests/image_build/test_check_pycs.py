"""image-build/lib/check-pycs.py: the venv's byte code must be unchecked-hash. A timestamp pyc (the kind
Python writes for a module imported before compileall ran, e.g. setuptools' _distutils_hack through its
.pth file) is named and fails the build."""

from __future__ import annotations

import py_compile
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "image-build" / "lib" / "check-pycs.py"


def compiled(tmp_path: Path, name: str, mode: py_compile.PycInvalidationMode) -> None:
    source = tmp_path / "site-packages" / f"{name}.py"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("VALUE = 1\n")
    py_compile.compile(str(source), doraise=True, invalidation_mode=mode)


def run(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(tree)], capture_output=True, text=True, timeout=60, check=False
    )


def test_unchecked_hash_byte_code_passes(tmp_path: Path) -> None:
    compiled(tmp_path, "good", py_compile.PycInvalidationMode.UNCHECKED_HASH)
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr


def test_timestamp_and_checked_byte_code_is_named(tmp_path: Path) -> None:
    compiled(tmp_path, "good", py_compile.PycInvalidationMode.UNCHECKED_HASH)
    compiled(tmp_path, "stamped", py_compile.PycInvalidationMode.TIMESTAMP)
    compiled(tmp_path, "checked", py_compile.PycInvalidationMode.CHECKED_HASH)
    (tmp_path / "site-packages" / "__pycache__" / "short.cpython-311.pyc").write_bytes(b"\x00" * 3)
    done = run(tmp_path)
    assert done.returncode == 1
    named = sorted(line.split("code: ", 1)[1] for line in done.stderr.splitlines() if "code: " in line)
    tag = sys.implementation.cache_tag
    assert named == [
        f"site-packages/__pycache__/checked.{tag}.pyc (flags 3)",
        "site-packages/__pycache__/short.cpython-311.pyc (truncated)",
        f"site-packages/__pycache__/stamped.{tag}.pyc (timestamp)",
    ]
    assert "3 such files" in done.stderr


def test_no_directory_is_a_usage_error(tmp_path: Path) -> None:
    assert run(tmp_path / "missing").returncode == 2
