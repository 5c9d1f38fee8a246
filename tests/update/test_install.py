"""`mynabox update install` against Debian's RAUC running as a service on a private system bus, with the
image's system.conf and our bootloader backend: a refused bundle changes nothing (no backend call, both
boot-state copies byte for byte, RAUC's status the same); a good one reaches RAUC's install over D-Bus.

This machine has no device-mapper (no /dev/mapper/control, no modprobe): RAUC cannot mount a verity bundle
here, so the good bundle's install ends in RAUC's own refusal, which the command reports as a failure with
RAUC's reason. Where device-mapper exists the same test expects slot B written and made primary.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mynabox.adapters import updatefiles
from mynabox.adapters.bootfiles import BootFiles
from mynabox.cli import main
from mynabox.update import bootstate as bs
from mynabox.update import bundle, lastresult
from mynabox_testkit.tlsfiles import TestPki, make_test_pki
from mynabox_testkit.updateserver import UpdateServer

from .conftest import RaucBox, Signer, make_signer, rauc_service, rauc_service_missing
from .test_bundle import make

pytestmark = pytest.mark.skipif(rauc_service_missing() is not None, reason=str(rauc_service_missing()))
DEVICE_MAPPER = Path("/dev/mapper/control").exists()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("install-bundles")
    (work / "tree" / "etc").mkdir(parents=True)
    (work / "tree" / "etc" / "mynabox-release").write_text("slot root of a test bundle\n")
    return work


@pytest.fixture
def box(tmp_path: Path, signer: Signer) -> Iterator[RaucBox]:
    with rauc_service(tmp_path, signer.ca) as box:
        files = BootFiles(box.boot)
        files.write(1, replace(bs.INITIAL, seq=bs.INITIAL.seq - 1))
        files.write(0, bs.INITIAL)
        yield box


def install(box: RaucBox, state: Path, bundle: Path | str, *extra: str) -> int:
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = box.env["DBUS_SYSTEM_BUS_ADDRESS"]
    try:
        return main(["update", "install", str(bundle), "--conf", str(box.conf), "--running", "0.2.0",
                     "--state-dir", str(state), "--timeout", "120", *extra])  # fmt: skip
    finally:
        del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]


def snapshot(box: RaucBox) -> tuple[bytes, bytes, str, str]:
    calls = box.calls.read_text() if box.calls.exists() else ""
    calls = "".join(line for line in calls.splitlines(keepends=True) if line.startswith("set-"))
    status = box.rauc("status", "--detailed", "--output-format=json").stdout
    return (box.boot / "bootstate.0").read_bytes(), (box.boot / "bootstate.1").read_bytes(), calls, status


@pytest.mark.parametrize("case", ["other-ca", "other-board", "older", "truncated", "damaged", "no-file"])
def test_a_refused_bundle_changes_nothing(
    box: RaucBox, work: Path, signer: Signer, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if case == "other-ca":
        bundle = make(work, make_signer(work / "stranger", "stranger"), case, version="0.3.0")
    elif case == "other-board":
        bundle = make(work, signer, case, version="0.3.0", compatible="mynabox-x86-test")
    elif case == "older":
        bundle = make(work, signer, case, version="0.1.9")
    elif case in ("truncated", "damaged"):
        data = bytearray(make(work, signer, "good", version="0.3.0").read_bytes())
        if case == "truncated":
            del data[len(data) // 2 :]
        else:
            data[int.from_bytes(data[40:48], "little") // 2] ^= 1
        bundle = tmp_path / f"{case}.raucb"
        bundle.write_bytes(bytes(data))
    else:
        bundle = tmp_path / "missing.raucb"
    capsys.readouterr()
    before = snapshot(box)
    assert install(box, tmp_path / "state", bundle) == 1
    err = capsys.readouterr().err
    reason = {
        "other-ca": "refused: RAUC refused it: signature verification failed",
        "other-board": "refused: bundle is for 'mynabox-x86-test', this box is 'mynabox-rpi-arm64'",
        "older": "refused: bundle version 0.1.9 is older than the running 0.2.0 (not forced)",
        "truncated": "refused: RAUC refused it",
        "damaged": "do not match its hash tree",
        "no-file": "install: ",
    }[case]
    assert reason in err
    assert snapshot(box) == before  # no backend change, both copies and RAUC's status as they were
    kept = updatefiles.read(tmp_path / "state")
    assert kept is not None
    assert kept.result == lastresult.REFUSED


def test_a_good_bundle_reaches_raucs_install(
    box: RaucBox, work: Path, signer: Signer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make(work, signer, "good", version="0.3.0")
    code = install(box, tmp_path / "state", good)
    out, err = capsys.readouterr()
    assert "install: update 0.2.0 -> 0.3.0: RAUC installs it into the other slot" in out
    kept = updatefiles.read(tmp_path / "state")
    assert kept is not None and kept.version == "0.3.0"
    status = json.loads(box.rauc("status", "--detailed", "--output-format=json").stdout)
    if DEVICE_MAPPER:  # pragma: no cover - not on this machine
        assert code == 0 and kept.result == lastresult.INSTALLED
        assert status["boot_primary"] == "rootfs.1"
        assert BootFiles(box.boot).read().state.order[0] == "B"
    else:
        # RAUC's service took the install (over D-Bus) and failed mounting the verity bundle.
        assert code == 1 and kept.result == lastresult.FAILED
        assert "RAUC's install failed: Failed mounting bundle: Failed to open /dev/mapper/control" in err
        assert status["boot_primary"] == "rootfs.0"
        assert BootFiles(box.boot).read().state.order == ("A",)
        log = (box.conf.parent / "service.log").read_text()
        assert "Verified inline signature by 'CN = fleet test bundle signer'" in log


def test_only_https_or_a_file(box: RaucBox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert install(box, tmp_path / "state", Path("http:/x")) == 1  # a plain path that does not exist
    for url in ("http://127.0.0.1:1/b.raucb", "ftp://127.0.0.1/b.raucb"):
        assert main(["update", "install", url, "--state-dir", str(tmp_path / "state")]) == 1
        assert "only a file or an https:// URL is accepted" in capsys.readouterr().err
    assert main(["update", "install", "https://127.0.0.1:1/b", "--state-dir", str(tmp_path / "s")]) == 1
    assert "needs --ca, --cert and --key" in capsys.readouterr().err


@pytest.fixture
def update_server(tmp_path: Path) -> Iterator[tuple[UpdateServer, TestPki, Path]]:
    """An HTTPS server on loopback that wants a client certificate of the test CA (ranges, bytes counted)."""
    pki = make_test_pki(tmp_path / "pki", clients=("box-1",))
    root = tmp_path / "www"
    root.mkdir()
    with UpdateServer(root, cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert) as server:
        yield server, pki, root


def test_a_bundle_from_the_update_server_with_the_box_certificate(
    box: RaucBox, work: Path, signer: Signer, tmp_path: Path, update_server: tuple[str, TestPki, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    server, pki, root = update_server
    url = server.url("").rstrip("/")
    (root / "good.raucb").write_bytes(make(work, signer, "good", version="0.3.0").read_bytes())
    (root / "old.raucb").write_bytes(make(work, signer, "older", version="0.1.9").read_bytes())
    me = pki.client("box-1")
    tls = ["--ca", str(pki.ca_cert), "--cert", str(me.cert), "--key", str(me.key)]
    state = tmp_path / "state"
    before = snapshot(box)
    assert install(box, state, f"{url}/old.raucb", *tls) == 1
    out, err = capsys.readouterr()
    # This host's RAUC (Debian 12's 1.8) cannot stream: the whole bundle is fetched, and the server says so.
    assert "install: fetching the whole bundle (this box's RAUC was built without streaming" in out
    assert "fetched" in out and "older than the running 0.2.0" in err
    assert server.sent("old.raucb") == (root / "old.raucb").stat().st_size
    assert snapshot(box) == before
    assert install(box, state, f"{url}/missing.raucb", *tls) == 1
    assert "refused: the update server answered 404" in capsys.readouterr().err
    assert install(box, state, f"{url}/good.raucb", *tls, "--max-bytes", "1000") == 1
    assert "larger than 1000 bytes" in capsys.readouterr().err
    # A server the box's CA did not sign is not the fleet's server.
    stranger = make_test_pki(tmp_path / "stranger")
    bad_ca = ["--ca", str(stranger.ca_cert), "--cert", str(me.cert), "--key", str(me.key)]
    assert install(box, state, f"{url}/good.raucb", *bad_ca) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    assert snapshot(box) == before
    # no partial file left (the install lock stays, empty)
    assert sorted(p.name for p in state.iterdir()) == ["update-install.lock", "update-result.json"]
    code = install(box, state, f"{url}/good.raucb", *tls)
    out, err = capsys.readouterr()
    assert "update 0.2.0 -> 0.3.0" in out
    assert code == (0 if DEVICE_MAPPER else 1)


def slot_with_formats(slot: Path, tmp_path: Path, oldest_reader: int | None) -> None:
    """The written slot B as RAUC leaves it: an ext4 holding the firmware's storage-formats.json (or none)."""
    site = tmp_path / "tree" / "opt/mynabox/venv/lib/python3.13/site-packages"
    (site / "mynabox" / "data").mkdir(parents=True)
    if oldest_reader is not None:
        declared = {"outbox": {"schema": 2, "oldest_reader": oldest_reader}}
        (site / "mynabox" / "data" / "storage-formats.json").write_text(json.dumps(declared))
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tmp_path / "tree"), str(slot), "8M"], check=True
    )


@pytest.mark.parametrize(
    ("oldest_reader", "refused"),
    [(1, None), (2, "needs a reader of schema 2"), (None, "storage formats cannot be read: debugfs")],
    ids=["readable", "not-readable", "undeclared"],
)
def test_the_written_slot_is_marked_bad_before_any_switch_when_this_version_could_not_read_its_outbox(
    box: RaucBox, tmp_path: Path, oldest_reader: int | None, refused: str | None
) -> None:
    """After RAUC wrote slot B and left it non-bootable (activate-installed=false): the new firmware's
    declared outbox format decides whether the real RAUC service makes it primary or marks it bad, through
    our backend."""
    from mynabox.commands.update import _check_new_slot

    slot_with_formats(tmp_path / "slot-b.img", tmp_path, oldest_reader)
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = box.env["DBUS_SYSTEM_BUS_ADDRESS"]
    try:
        box.rauc("status", "mark-bad", "other")  # RAUC marks the slot it writes non-bootable first
        assert bs.get_primary(BootFiles(box.boot).read().state) == "A"
        if refused is None:
            _check_new_slot(box.conf, tmp_path / "cmdline", "0.3.0")
        else:
            with pytest.raises(bundle.BundleRefused, match=refused):
                _check_new_slot(box.conf, tmp_path / "cmdline", "0.3.0")
    finally:
        del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
    state = BootFiles(box.boot).read().state
    assert bs.get_primary(state) == ("B" if refused is None else "A")
    assert bs.get_state(state, "B") == (refused is None)


def test_streaming_required_where_rauc_cannot_is_refused_before_a_byte(
    box: RaucBox, work: Path, signer: Signer, tmp_path: Path,
    update_server: tuple[UpdateServer, TestPki, Path], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    server, pki, root = update_server
    (root / "good.raucb").write_bytes(make(work, signer, "good", version="0.3.0").read_bytes())
    me = pki.client("box-1")
    tls = ["--ca", str(pki.ca_cert), "--cert", str(me.cert), "--key", str(me.key)]
    before = snapshot(box)
    assert install(box, tmp_path / "state", server.url("good.raucb"), *tls, "--stream", "always") == 1
    err = capsys.readouterr().err
    assert (
        "refused: streaming required (--stream always) but this box's RAUC was built without streaming" in err
    )
    assert server.requests("good.raucb") == 0 and server.sent("good.raucb") == 0
    assert snapshot(box) == before
    kept = updatefiles.read(tmp_path / "state")
    assert kept is not None and kept.result == lastresult.REFUSED
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "update-install.lock",
        "update-result.json",
    ]
