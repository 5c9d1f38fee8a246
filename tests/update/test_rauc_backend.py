"""RAUC itself (Debian's rauc, as a service on a private system bus) driving our custom bootloader backend:
what `rauc status`, `mark-good`, `mark-bad` and `mark-active` ask and what lands in the two copies."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from mynabox.adapters.bootfiles import BootFiles
from mynabox.cli import main
from mynabox.update import bootstate as bs
from mynabox.update import raucstatus

from .conftest import REPO, Signer, rauc_service, rauc_service_missing

pytestmark = pytest.mark.skipif(rauc_service_missing() is not None, reason=str(rauc_service_missing()))


def _status(box: object) -> raucstatus.Status:
    out = box.rauc("status", "--detailed", "--output-format=json")  # type: ignore[attr-defined]
    return raucstatus.parse(out.stdout)


def test_rauc_reads_and_changes_the_boot_state_through_our_backend(tmp_path: Path, signer: Signer) -> None:
    files = BootFiles(tmp_path / "boot")
    with rauc_service(tmp_path, signer.ca) as box:
        files.write(1, replace(bs.INITIAL, seq=0))
        files.write(0, bs.INITIAL)
        status = _status(box)
        assert (status.compatible, status.booted, status.boot_primary) == (
            "mynabox-rpi-arm64",
            "A",
            "rootfs.0",
        )
        assert (status.slot("A").boot_status, status.slot("B").boot_status) == ("good", "bad")  # type: ignore[union-attr]

        box.rauc("status", "mark-active", "other")  # what an install does once slot B is written
        reading = files.read()
        assert (reading.source, reading.state) == (1, bs.BootState(("B", "A"), 3, 3, 2, trial="B"))
        assert b"BOOT_ORDER=B A trialB\0" in files.path(1).read_bytes()
        assert _status(box).boot_primary == "rootfs.1"

        files.write(0, replace(reading.state, a_left=2, seq=3))  # U-Boot booted A once more
        box.rauc("status", "mark-good", "booted")  # A good: B stays on trial
        assert files.read().state == bs.BootState(("B", "A"), 3, 3, 4, trial="B")

        box.rauc("status", "mark-bad", "other")  # B bad: out of the order, no longer on trial
        assert files.read().state == bs.BootState(("A",), 3, 0, 5)
        assert _status(box).boot_primary == "rootfs.0"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert {"get-primary", "set-primary B", "set-state A good", "set-state B bad"} <= set(calls)


def test_rauc_marking_the_slot_on_trial_good_ends_its_trial(tmp_path: Path, signer: Signer) -> None:
    """B booted on trial (made primary by an install, one try spent): RAUC's mark-good of the booted slot, as
    the health check runs it, gives B its tries back and drops the trial word; a second one writes nothing."""
    files = BootFiles(tmp_path / "boot")
    with rauc_service(tmp_path, signer.ca, booted="B") as box:
        trying = bs.set_primary(bs.BootState(("A",), 3, 0, 6), "B")
        files.write(1, trying.with_left("B", 2))
        files.write(0, replace(trying, seq=5))
        assert b"BOOT_ORDER=B A trialB\0" in files.path(1).read_bytes()
        box.rauc("status", "mark-good", "booted")
        assert files.read() == bs.Reading(bs.BootState(("B", "A"), 3, 3, 7), 0, bs.Damage.OK)
        assert b"BOOT_ORDER=B A\0" in files.path(0).read_bytes()
        before = files.path(0).read_bytes(), files.path(1).read_bytes()
        box.rauc("status", "mark-good", "booted")
        assert (files.path(0).read_bytes(), files.path(1).read_bytes()) == before
    assert "set-state B good" in (tmp_path / "calls").read_text().splitlines()


def test_damaged_copies_still_answer_and_the_status_says_so(
    tmp_path: Path, signer: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    files = BootFiles(tmp_path / "boot")
    with rauc_service(tmp_path, signer.ca) as box:
        files.path(0).write_bytes(b"\0" * 512)
        files.path(1).write_bytes(bs.encode(bs.set_primary(bs.INITIAL, "B"))[:200])
        assert _status(box).boot_primary == "rootfs.0"  # RAUC's default order, A first
        raw = box.rauc("status", "--detailed", "--output-format=json").stdout
        (tmp_path / "status.json").write_text(raw)
        (tmp_path / "cmdline").write_text("rauc.slot=A mynabox.bootstate=both-bad\n")
        code = main(
            ["update", "status", "--dir", str(files.directory), "--cmdline", str(tmp_path / "cmdline"),
             "--rauc-json", str(tmp_path / "status.json")]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "boot state at boot: both-bad" in out
    assert "(copy None, both-bad)" in out
    assert json.loads(raw)["booted"] == "A"


def test_only_root_may_talk_to_rauc(tmp_path: Path, signer: Signer) -> None:
    """The image's D-Bus policy for RAUC's name, on a deny-by-default system bus: the daemon's user cannot
    install or mark slots."""
    with rauc_service(tmp_path, signer.ca) as box:
        BootFiles(tmp_path / "boot").write(0, bs.INITIAL)
        assert box.rauc("status", check=False).returncode == 0
        stranger = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "rauc", "status", "mark-active", "other"],
            env=box.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert stranger.returncode != 0
    assert "Rejected send message" in stranger.stderr, stranger.stderr
    assert BootFiles(tmp_path / "boot").read().state == bs.INITIAL


def test_the_service_unit_verifies() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = REPO / "image-build" / "rauc" / "rauc.service"
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "--generators=no", str(unit)],
        capture_output=True, text=True, timeout=120, check=False,
        env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0 and "rauc.service" not in done.stdout + done.stderr, done.stderr


def test_an_image_without_the_fleets_ca_runs_rauc_but_installs_nothing(
    tmp_path: Path, signer: Signer
) -> None:
    # image-build/build without --keyring leaves /etc/rauc/keyring.pem out: the service must still answer
    # (the health check marks the booted slot good through it) and refuse every bundle.
    files = BootFiles(tmp_path / "boot")
    tree = tmp_path / "bundle" / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_text("ID=mynabox-test\n")
    bundle = tmp_path / "bundle" / "b.raucb"
    subprocess.run(
        [str(REPO / "image-build/make-bundle"), "--tree", str(tree), "--cert", str(signer.cert),
         "--key", str(signer.key), "--version", "9.0.0", "--out", str(bundle)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    with rauc_service(tmp_path, tmp_path / "no-keyring.pem") as box:
        files.write(1, replace(bs.INITIAL, seq=0))
        files.write(0, bs.INITIAL)
        assert _status(box).booted == "A"
        box.rauc("status", "mark-good", "booted")
        refused = box.rauc("install", str(bundle), check=False)
        assert refused.returncode != 0 and "failed to load CA file" in refused.stdout
        assert files.read().state.order == ("A",)  # nothing changed
