"""The pure packages do no I/O: no files, processes, sockets, environment or terminal.

import-linter cannot forbid builtins (``open``) or the standard library's ``os``, so this reads the pure
packages' syntax trees and fails on any I/O module imported, any I/O call, any environment read. What is
allowed is listed below with the reason; an entry that no longer matches fails too, so the list stays exact.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mynabox

ROOT = Path(mynabox.__file__).parent
# as in the import-linter contract
PURE = ("card", "core", "render", "summary", "payload", "vocab.py", "record.py", "update")

IO_MODULES = {
    "os", "io", "pathlib", "shutil", "subprocess", "socket", "tempfile", "sqlite3", "glob", "select",
    "selectors", "fcntl", "mmap", "signal", "ssl", "urllib", "http", "importlib.resources", "sys",
}  # fmt: skip
IO_BUILTINS = {"open", "input", "print", "exec", "eval", "__import__"}
IO_METHODS = {
    "open", "read_text", "read_bytes", "write_text", "write_bytes", "mkdir", "rmdir", "unlink", "touch",
    "iterdir", "glob", "rglob", "exists", "is_file", "is_dir", "stat", "lstat", "chmod", "symlink_to",
    "files", "getenv", "environ",
}  # fmt: skip

ALLOWED = {
    # The package's own data, read-only, shipped with the code: as constant as a literal in the module.
    "card/certcheck.py: import importlib.resources": "the bundled JPKI CA certificates",
    "card/certcheck.py: call .files": "the bundled JPKI CA certificates",
    "card/certcheck.py: call .iterdir": "the bundled JPKI CA certificates",
    "card/certcheck.py: call .read_bytes": "the bundled JPKI CA certificates",
    "summary/flags.py: import importlib.resources": "the bundled drug-class table",
    "summary/flags.py: call .files": "the bundled drug-class table",
    "summary/flags.py: call .read_text": "the bundled drug-class table",
    # Debian's bitmap fonts, part of the image, found once and cached; PIL opens them.
    "render/fonts.py: import pathlib": "the installed font files",
    "render/fonts.py: call .is_file": "the installed font files",
}


def _module_files() -> list[Path]:
    found: list[Path] = []
    for name in PURE:
        path = ROOT / name
        found.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return found


def _findings(path: Path, root: Path = ROOT) -> set[str]:
    where = path.relative_to(root).as_posix()
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            top = module.split(".")[0]
            if module in IO_MODULES or (top in IO_MODULES and top != "importlib"):
                out.add(f"{where}: import {module if module in IO_MODULES else top}")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in IO_BUILTINS:
                out.add(f"{where}: call {func.id}()")
            elif isinstance(func, ast.Attribute) and func.attr in IO_METHODS:
                out.add(f"{where}: call .{func.attr}")
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "environb"}:
            out.add(f"{where}: reads .{node.attr}")
    return out


def test_the_pure_packages_do_no_io() -> None:
    found = set().union(*(_findings(path) for path in _module_files()))
    assert sorted(found - ALLOWED.keys()) == []
    assert sorted(ALLOWED.keys() - found) == []  # a stale entry: drop it


def test_the_scan_sees_io(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom pathlib import Path\nimport subprocess\n"
        "def f(p):\n    open(p)\n    Path(p).write_bytes(b'')\n    return os.environ['X']\n"
    )
    assert _findings(sample, tmp_path) == {
        "sample.py: import os",
        "sample.py: import pathlib",
        "sample.py: import subprocess",
        "sample.py: call open()",
        "sample.py: call .write_bytes",
        "sample.py: reads .environ",
    }
