"""The box's side of RAUC's streaming: the TLS files handed to the unprivileged helper's user for one install
only (as root: real chown, real reads as that user), the nbd check, RAUC's build words."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mynabox.adapters import streaming
from mynabox_testkit.tlsfiles import TestPki, make_test_pki
from support.rundir import passable_dir

ROOT = os.geteuid() == 0
USER = "nobody"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    with passable_dir("mynabox-test-stream-") as path:
        yield path


@pytest.fixture
def pki(open_dir: Path) -> TestPki:
    pki = make_test_pki(open_dir / "pki", clients=("box-1",))
    (open_dir / "pki").chmod(0o755)
    pki.client("box-1").key.chmod(0o600)  # the box's own key: its owner's alone
    return pki


def tls_of(pki: TestPki, run: Path, user: str = USER) -> object:
    me = pki.client("box-1")
    return streaming.sandbox_tls(user, ca=pki.ca_cert, cert=me.cert, key=me.key, run_dir=run)


@pytest.mark.skipif(not ROOT, reason="needs root (chown to the streaming user)")
def test_the_copies_are_the_streaming_users_alone_and_gone_after(pki: TestPki, open_dir: Path) -> None:
    run = open_dir / "run"
    run.mkdir(mode=0o755)
    account = pwd.getpwnam(USER)
    with tls_of(pki, run) as tls:  # type: ignore[attr-defined]
        assert isinstance(tls, streaming.SandboxTls)
        me = pki.client("box-1")
        assert tls.key.read_bytes() == me.key.read_bytes()
        assert (
            tls.cert.read_bytes() == me.cert.read_bytes() and tls.ca.read_bytes() == pki.ca_cert.read_bytes()
        )
        for path in (tls.key, tls.key.parent):
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (account.pw_uid, account.pw_gid)
        assert stat.S_IMODE(tls.key.stat().st_mode) == 0o400
        assert stat.S_IMODE(tls.key.parent.stat().st_mode) == 0o700
        # The helper's user reads its copy (as RAUC's helper does after setuid) but not the box's own key.
        as_user = [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            "cat",
        ]
        assert subprocess.run([*as_user, str(tls.key)], capture_output=True, check=False).returncode == 0
        assert me.key.read_bytes() and os.access(me.key.parent, os.R_OK)
        assert subprocess.run([*as_user, str(me.key)], capture_output=True, check=False).returncode != 0
        assert subprocess.run([*as_user, str(pki.ca_cert)], capture_output=True, check=False).returncode == 0
        assert tls.rauc_args() == [
            "--tls-ca",
            str(tls.ca),
            "--tls-cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
        ]
        held = tls.key.parent
    assert not held.exists() and list(run.iterdir()) == []


@pytest.mark.skipif(not ROOT, reason="needs root (chown to the streaming user)")
def test_removed_when_the_install_fails_inside(pki: TestPki, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), tls_of(pki, tmp_path) as tls:  # type: ignore[attr-defined]
        assert tls.key.exists()
        raise RuntimeError("RAUC failed")
    assert list(tmp_path.iterdir()) == []


def test_refusals_leave_nothing(pki: TestPki, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for user, reason in (("no-such-user-x", "'no-such-user-x' does not exist"), ("root", "must not be root")):
        with pytest.raises(streaming.StreamingError, match=reason), tls_of(pki, run, user):
            pass
    me = pki.client("box-1")
    for ca, key in ((tmp_path / "missing.pem", me.key), (pki.ca_cert, Path("/dev/zero"))):
        held = streaming.sandbox_tls(USER, ca=ca, cert=me.cert, key=key, run_dir=run)
        with pytest.raises(streaming.StreamingError, match="the box's TLS files cannot be read"), held:
            pass
    with (
        pytest.raises(streaming.StreamingError, match="no private directory"),
        tls_of(pki, tmp_path / "none"),
    ):
        pass
    assert list(run.iterdir()) == []


def test_nbd_is_the_kernels_module_directory(tmp_path: Path) -> None:
    assert not streaming.nbd_present(tmp_path / "nbd")
    (tmp_path / "nbd").mkdir()
    assert streaming.nbd_present(tmp_path / "nbd")


def test_raucs_own_version_words() -> None:
    text = streaming.rauc_version()
    assert text == "" or "rauc" in text.lower()
