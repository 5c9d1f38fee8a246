"""The update test's broken slots and refusals (image-build/update-test.py), on the host: its debugfs edits
on a real ext4 laid out as the image's root, and each refused bundle's expected reason is what the firmware
says (the same text the test looks for on the emulated box's console)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mynabox.update import bundle, formats

IMAGE_BUILD = Path(__file__).resolve().parents[2] / "image-build"
pytestmark = pytest.mark.skipif(shutil.which("debugfs") is None, reason="needs e2fsprogs")


def update_test() -> ModuleType:
    sys.path.insert(0, str(IMAGE_BUILD))
    spec = importlib.util.spec_from_file_location("update_test", IMAGE_BUILD / "update-test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cat(image: Path, path: str) -> bytes:
    return subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, check=True
    ).stdout


def test_each_edit_breaks_what_it_names_and_nothing_else(tmp_path: Path) -> None:
    ut = update_test()
    tree = tmp_path / "tree"
    shipped = (Path(__file__).resolve().parents[2] / "firmware" / formats.PATH).read_bytes()
    files = {
        "etc/systemd/system/mynabox.service.d/50-keep.conf": b"[Service]\n",
        f"{ut.SITE.lstrip('/')}/{formats.PATH}": shipped,
        "usr/lib/systemd/systemd": b"\x7fELF the real init",
    }
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    root_a = tmp_path / "root-a.ext4"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(root_a), "8M"], check=True)
    for name, script in ut.slot_edits(tmp_path).items():
        root = tmp_path / f"{name}.ext4"
        shutil.copyfile(root_a, root)
        (tmp_path / f"{name}.debugfs").write_text(script)
        subprocess.run(["debugfs", "-w", "-f", str(tmp_path / f"{name}.debugfs"), str(root)], check=True)
        dropin = cat(root, "/etc/systemd/system/mynabox.service.d/90-never-ready.conf")
        declared = formats.parse(cat(root, f"{ut.SITE}/{formats.PATH}").decode())
        init = cat(root, "/usr/lib/systemd/systemd")
        assert (b"ExecStart=/bin/sleep infinity" in dropin) == (name == "bad"), name
        assert (formats.refusal(declared, running_schema=1) is not None) == (name == "newer-outbox"), name
        assert init.startswith(b"\x7fELF") == (name != "panic"), name


def test_each_refused_bundles_reason_is_the_firmwares_own() -> None:
    ut = update_test()
    reasons = {name: reason for name, (reason, _args) in ut.REFUSED.items()}
    with pytest.raises(bundle.BundleRefused) as board:
        bundle.check(bundle.BundleInfo("mynabox-other-board", "0.3.0", None), compatible="mynabox-rpi-arm64",
                     running="0.2.0")  # fmt: skip
    assert reasons["other-board"] in str(board.value)
    with pytest.raises(bundle.BundleRefused) as older:
        bundle.check(bundle.BundleInfo("mynabox-rpi-arm64", "0.0.1", None), compatible="mynabox-rpi-arm64",
                     running="0.2.0")  # fmt: skip
    assert reasons["older"] in str(older.value)
    why = formats.refusal(formats.OutboxFormat(2, 2), running_schema=1)
    assert why is not None and reasons["newer-outbox"] in why
    source = (Path(__file__).resolve().parents[2] / "firmware/mynabox/commands/update.py").read_text()
    assert f'f"{reasons["stranger"]}: ' in source


def test_install_lines_include_one_that_follows_the_shells_prompt() -> None:
    """The emulated box's console: stderr's refusal came right after the prompt, and the first version of
    the refusal check never saw it (every refusal read as NOT REFUSED)."""
    console = (
        "\x1b[?2004hroot@mynabox:/# install: refused: RAUC refused it: signature verification failed\r\n"
        "install: fetched 253355127 bytes from the update server\r\n"
        "@@install-end-10 rc=1\r\n"
        "root@mynabox:/# echo install: not ours\r\n"
    )
    assert update_test().install_lines(console) == [
        "install: refused: RAUC refused it: signature verification failed",
        "install: fetched 253355127 bytes from the update server",
    ]
