"""`mynabox update install https://…` streamed by the box's own RAUC: trixie's 1.13 (arm64, the image's) run
under qemu-user, as the RAUC service on a private system bus and as the command's `rauc`, against the test
kit's update server (range requests, the box's client certificate, bytes counted).

Opt-in: MYNABOX_TEST_RAUC_ROOT names an arm64 root holding usr/bin/rauc 1.13 and its libraries (the image's
root tree, or the rauc package unpacked into a root with its dependencies); needs qemu-aarch64-static.
What runs for real: RAUC's own streaming (its sandboxed helper, as user nobody here, reads the TLS copies
the command made for it), its signature check over the stream, our board and version checks on the
streamed manifest — a refused bundle is refused after a few KiB, nothing written — and the install handed
to RAUC's service with the TLS copies. Here the service's install stops at the block device (qemu-user
passes no generic netlink, through which RAUC sets up nbd; this kernel has no nbd either); on the emulated
box (`make image-stream-test`) it runs on.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mynabox.adapters import updatefiles
from mynabox.adapters.bootfiles import BootFiles
from mynabox.cli import main
from mynabox.update import bootstate as bs
from mynabox.update import lastresult
from mynabox_testkit.tlsfiles import TestPki, make_test_pki
from mynabox_testkit.updateserver import UpdateServer
from support.rundir import passable_dir

from .conftest import RaucBox, Signer, make_signer, rauc_service, rauc_service_missing
from .test_bundle import make

ROOT = os.environ.get("MYNABOX_TEST_RAUC_ROOT", "")
QEMU = shutil.which("qemu-aarch64-static")
pytestmark = [
    pytest.mark.skipif(
        not ROOT or not Path(ROOT, "usr/bin/rauc").is_file() or QEMU is None,
        reason="set MYNABOX_TEST_RAUC_ROOT to an arm64 root with RAUC 1.13 (needs qemu-aarch64-static)",
    ),
    pytest.mark.skipif(rauc_service_missing() is not None, reason=str(rauc_service_missing())),
]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("streamed-bundles")
    (work / "tree" / "etc").mkdir(parents=True)
    (work / "tree" / "etc" / "mynabox-release").write_text("slot root of a test bundle\n")
    return work


@pytest.fixture
def rauc_113(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`rauc` on PATH is the arm64 RAUC 1.13 under qemu-user (the host's 1.8 still makes the bundles)."""
    bin_dir = tmp_path / "rauc-113-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "rauc"
    wrapper.write_text(f'#!/bin/sh\nQEMU_LD_PREFIX={ROOT} exec {QEMU} {ROOT}/usr/bin/rauc "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def open_run() -> Iterator[Path]:
    """The command's /run (the TLS copies for RAUC's helper go there)."""
    with passable_dir("mynabox-test-run-") as path:
        yield path


@pytest.fixture
def box(tmp_path: Path, signer: Signer, rauc_113: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RaucBox]:
    monkeypatch.setenv("PATH", f"{rauc_113.parent}:{os.environ['PATH']}")
    with rauc_service(tmp_path, signer.ca) as box:
        files = BootFiles(box.boot)
        files.write(1, replace(bs.INITIAL, seq=bs.INITIAL.seq - 1))
        files.write(0, bs.INITIAL)
        yield box


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[UpdateServer, TestPki, Path]]:
    pki = make_test_pki(tmp_path / "pki", server_names=("127.0.0.1",), clients=("box-1",))
    root = tmp_path / "www"
    root.mkdir()
    with UpdateServer(root, cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert) as server:
        yield server, pki, root


def install(box: RaucBox, state: Path, run: Path, url: str, pki: TestPki, *extra: str) -> int:
    me = pki.client("box-1")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = box.env["DBUS_SYSTEM_BUS_ADDRESS"]
    try:
        return main(["update", "install", url, "--conf", str(box.conf), "--running", "0.2.0",
                     "--state-dir", str(state), "--timeout", "300", "--run-dir", str(run),
                     "--ca", str(pki.ca_cert), "--cert", str(me.cert), "--key", str(me.key),
                     *extra])  # fmt: skip
    finally:
        del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]


def boot_state(box: RaucBox) -> tuple[bytes, bytes]:
    return (box.boot / "bootstate.0").read_bytes(), (box.boot / "bootstate.1").read_bytes()


def test_refused_on_the_streamed_manifest_after_a_few_kib(
    box: RaucBox, work: Path, signer: Signer, tmp_path: Path, open_run: Path,
    server: tuple[UpdateServer, TestPki, Path], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    srv, pki, root = server
    nbd = tmp_path / "nbd"
    nbd.mkdir()  # as if the kernel had nbd: the command streams
    cases = {
        "older": (make(work, signer, "older", version="0.1.9"), "older than the running 0.2.0"),
        "board": (make(work, signer, "board", version="0.3.0", compatible="mynabox-x86-test"), "is for"),
        "stranger": (
            make(work, make_signer(work / "stranger", "stranger"), "stranger", version="0.3.0"),
            "RAUC refused it: signature verification failed",
        ),
    }
    before = boot_state(box)
    for name, (bundle, reason) in cases.items():
        (root / f"{name}.raucb").write_bytes(bundle.read_bytes())
        code = install(box, tmp_path / "state", open_run, srv.url(f"{name}.raucb"), pki,
                       "--nbd-module", str(nbd))  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 1, (out, err)
        assert "install: streaming from the update server (RAUC streams it" in out
        assert reason in err, err
        size = bundle.stat().st_size
        assert 0 < srv.sent(f"{name}.raucb") < min(size, 64 * 1024), (name, srv.sent(f"{name}.raucb"), size)
        kept = updatefiles.read(tmp_path / "state")
        assert kept is not None and kept.result == lastresult.REFUSED
    assert boot_state(box) == before
    assert list(open_run.iterdir()) == []  # the TLS copies are gone


def test_a_good_bundle_is_streamed_to_raucs_install(
    box: RaucBox, work: Path, signer: Signer, tmp_path: Path, open_run: Path,
    server: tuple[UpdateServer, TestPki, Path], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    srv, pki, root = server
    nbd = tmp_path / "nbd"
    nbd.mkdir()
    (root / "good.raucb").write_bytes(make(work, signer, "good", version="0.3.0").read_bytes())
    before = boot_state(box)
    code = install(box, tmp_path / "state", open_run, srv.url("good.raucb"), pki, "--nbd-module", str(nbd))
    out, err = capsys.readouterr()
    assert "install: update 0.2.0 -> 0.3.0: RAUC streams it into the other slot" in out
    log = (box.conf.parent / "service.log").read_text()
    assert "Remote URI detected, streaming bundle" in log
    assert "nbd server running as UID 65534" in log  # the sandboxed helper, reading the TLS copies
    # Here RAUC's service stops at the block device: it sets nbd up over generic netlink, which qemu-user
    # does not pass ("Protocol mismatch"; this kernel has no nbd anyway). The slot was never made primary.
    assert code == 1 and "RAUC's install failed: Failed mounting bundle" in err
    assert boot_state(box) == before
    assert list(open_run.iterdir()) == []
    # And without --nbd-module here (no nbd on this host) the same install fetches the whole bundle.
    sent = srv.sent("good.raucb")
    install(box, tmp_path / "state", open_run, srv.url("good.raucb"), pki)
    out, _ = capsys.readouterr()
    assert "install: fetching the whole bundle (the kernel has no nbd" in out
    assert srv.sent("good.raucb") - sent == (root / "good.raucb").stat().st_size
