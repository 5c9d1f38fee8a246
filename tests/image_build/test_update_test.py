"""The update test's broken slots and refusals (image-build/update-test.py), on the host: its debugfs edits
on a real ext4 laid out as the image's root, and each refused bundle's expected reason is what the firmware
says (the same text the test looks for on the emulated box's console)."""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from mynabox.update import formats

from .scripts import IMAGE_BUILD, load

pytestmark = pytest.mark.skipif(shutil.which("debugfs") is None, reason="needs e2fsprogs")


def update_test() -> ModuleType:
    return load("update-test")


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
        assert init.startswith(b"\x7fELF") == (name not in ("panic", "hang")), name
        assert init.startswith(b"#!/bin/sh\n") == (name == "hang"), name
        if name == "hang":  # a PID 1 that runs (mode kept by debugfs's write) and loops for ever
            stat = subprocess.run(["debugfs", "-R", "stat /usr/lib/systemd/systemd", str(root)],
                                  capture_output=True, text=True, check=True).stdout  # fmt: skip
            assert "Mode:  0755" in stat, stat
            assert b"while :; do sleep 3600; done" in init and ut.HANG_LINE.encode() in init
            subprocess.run(["sh", "-n"], input=init, check=True)


def test_the_hanging_slots_tries_are_read_from_the_console() -> None:
    """hang_tries on a console of the shape the emulated box gives (B's three tries, then A): each try's
    softdog load and reset by the kernel's clock, the hang lines, and no panic."""
    ut = update_test()
    boot = (
        "Begin: Loading essential drivers ... [   13.101000] "
        "softdog: initialized. soft_noboot=0 soft_margin=120 sec soft_panic=0 (nowayout=0)\r\n"
        "[   13.102000] softdog:              soft_reboot_cmd=<not set> soft_active_on_boot=1\r\n"
        "[   21.500000] update-test: PID 1 of this slot hangs\r\n"
        "[  133.150000] softdog: Initiating system reboot\r\n"
        "mynabox: booting slot B from virtio 0:3\r\n"
    )
    console = boot * 3 + "[   12.0] softdog: initialized. soft_noboot=0 soft_margin=120 sec\r\nREADY\r\n"
    seen = ut.hang_tries(console)
    assert seen == {"hangs": 3, "resets": 3, "load_to_reset_s": [120.0, 120.0, 120.0], "panics": 0}
    assert (
        ut.hang_tries(console.replace("softdog: Initiating", "Kernel panic; softdog: Initiating"))["panics"]
        == 3
    )


@pytest.mark.skipif(shutil.which("rauc") is None, reason="needs rauc (scripts/install-deps.sh)")
def test_each_refused_bundles_reason_is_the_firmwares_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reasons the update test looks for on the box's console, from the firmware's own check: each
    REFUSED bundle made with the test's arguments (a small tree) and checked by `update check-bundle` with
    the host's RAUC, running the firmware's version as the image does; newer-outbox by its pure rule (its
    real refusal after RAUC's write is tests/update/test_install.py's)."""
    import mynabox
    from mynabox.cli import main
    from update.conftest import make_signer, system_conf_for_test

    ut = update_test()
    signer = make_signer(tmp_path / "pki", "fleet")
    conf = system_conf_for_test(tmp_path, signer.ca, tmp_path / "backend", (tmp_path / "a", tmp_path / "b"))
    tree = tmp_path / "tree" / "etc"
    tree.mkdir(parents=True)
    (tree / "mynabox-release").write_bytes(random.Random(1).randbytes(64 * 1024))  # > one 4 KiB block
    for name, (reason, args) in ut.REFUSED.items():
        if name == "newer-outbox":
            why = formats.refusal(formats.OutboxFormat(2, 2), running_schema=1)
            assert why is not None and reason in why
            continue
        by = make_signer(tmp_path / name, name) if name == "stranger" else signer
        out = tmp_path / f"{name}.raucb"
        subprocess.run(
            [IMAGE_BUILD / "make-bundle", "--tree", str(tmp_path / "tree"), "--cert", str(by.cert),
             "--key", str(by.key), *args, "--out", str(out)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        capsys.readouterr()
        argv = ["update", "check-bundle", str(out), "--conf", str(conf), "--running", mynabox.__version__]
        assert main(argv) == 1, name
        assert reason in capsys.readouterr().err, name


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


@pytest.mark.parametrize("taps", [True, False], ids=["update-and-cut-test", "stream-test"])
def test_the_settings_line_gives_the_config_what_the_tests_need(tmp_path: Path, taps: bool) -> None:
    """The line the update, stream and cut tests run in the guest, run here by bash on a config of the
    image's shape (the daemon's restart left out): the result must be TOML with their settings."""
    import tomllib

    ut = update_test()
    spec = importlib.util.spec_from_file_location("boot_test", IMAGE_BUILD / "boot-test.py")
    assert spec is not None and spec.loader is not None
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)
    config = tmp_path / "config.toml"
    config.write_text('[device]\nid = "amb-1"\n\n[storage]\nstate_dir = "/var/lib/mynabox"\n')
    line = ut.settings_line(str(config), bt.READER if taps else None)
    assert line.endswith(" && systemctl restart mynabox.service")
    subprocess.run(["bash", "-c", line.removesuffix(" && systemctl restart mynabox.service")], check=True)
    got = tomllib.loads(config.read_text())
    assert got["update"] == {"idle_min": 0.5}
    assert got["device"] == ({"test_mode": True, "id": "amb-1"} if taps else {"id": "amb-1"})
    assert got.get("reader") == ({"extended_apdu": "off"} if taps else None)


def read_newc(data: bytes) -> dict[str, tuple[int, bytes, int, int]]:
    """The entries of one newc archive (as the kernel reads it): name → (mode, data, rdev major, minor)."""
    entries, pos = {}, 0
    while True:
        assert data[pos : pos + 6] == b"070701", pos
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        name_end = pos + 110 + f[11]
        name = data[pos + 110 : name_end - 1].decode()
        start = name_end + (-name_end % 4)
        end = start + f[6]
        if name == "TRAILER!!!":
            return entries
        entries[name] = (f[1], data[start:end], f[9], f[10])
        pos = end + (-end % 4)


def test_the_early_bundles_initramfs_hangs_at_its_first_line(tmp_path: Path) -> None:
    """early_edit appends a second archive to the slot's initramfs (the file /boot/initrd.img links to):
    the original bytes unchanged, zeros to a 4-byte boundary, then an /init that prints its line and loops,
    with a /dev/console to print on."""
    ut = update_test()
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    original = bytes(random.Random(5).randrange(256) for _ in range(4097))  # as compressed bytes look
    (tree / "boot" / "initrd.img-6.12.0-test").write_bytes(original)
    (tree / "boot" / "initrd.img").symlink_to("initrd.img-6.12.0-test")
    root = tmp_path / "root.ext4"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(root), "8M"], check=True)
    script = tmp_path / "early.debugfs"
    script.write_text(ut.early_edit(tmp_path, root))
    subprocess.run(["debugfs", "-w", "-f", str(script), str(root)], check=True, capture_output=True)
    new = cat(root, "/boot/initrd.img-6.12.0-test")
    assert new[: len(original)] == original and new[len(original) : len(original) + 3] == b"\0\0\0"
    entries = read_newc(new[len(original) + 3 :])
    mode, init, _, _ = entries["init"]
    assert mode == 0o100755 and init.startswith(b"#!/bin/sh\n") and ut.EARLY_LINE.encode() in init
    assert b"while :; do sleep 3600; done" in init
    subprocess.run(["sh", "-n"], input=init, check=True)
    assert entries["dev/console"][0] == 0o20600 and entries["dev/console"][2:] == (5, 1)


def test_the_early_bundles_tries_are_read_from_the_console() -> None:
    ut = update_test()
    boot = (
        "mynabox: slot B: on trial: early watchdog i6300esb armed (0x78 s)\r\n"
        "[    3.1] Run /init as init process\r\n"
        "update-test: the initramfs of this slot hangs before softdog\r\n"
        "mynabox: booting slot B from virtio 0:3\r\n"
    )
    console = boot * 3 + "[   12.0] softdog: initialized. soft_noboot=0 soft_margin=120 sec\r\nREADY\r\n"
    assert ut.early_tries(console) == {"hangs": 3, "armed": 3, "softdog_loads": 1, "panics": 0}
