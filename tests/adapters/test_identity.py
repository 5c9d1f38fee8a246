"""`check_identity` as provisioning will call it: a set of identity files in, refusals out, nothing raised."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from mynabox.adapters.identity import FileKind, IdentityFile, Refusal, check_identity, check_permissions
from mynabox.adapters.keyfiles import save_private_key, save_public_key
from mynabox.payload.keys import generate_device_key
from mynabox_testkit.tlsfiles import make_test_pki


def identity(tmp_path: Path) -> list[IdentityFile]:
    pki = make_test_pki(tmp_path / "pki", clients=("amb-1",))
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    shutil.copyfile(pki.client("amb-1").key, creds / "tls-key")
    (creds / "tls-key").chmod(0o600)
    save_private_key(creds / "device-key", generate_device_key())
    save_public_key(tmp_path / "gateway.pem", generate_device_key())
    return [
        IdentityFile("ca", pki.ca_cert, FileKind.CA),
        IdentityFile("cert", pki.client("amb-1").cert, FileKind.CERT),
        IdentityFile("key", creds / "tls-key", FileKind.TLS_KEY),
        IdentityFile("device", creds / "device-key", FileKind.DEVICE_KEY),
        IdentityFile("gateway", tmp_path / "gateway.pem", FileKind.GATEWAY_KEY),
    ]


def test_a_good_identity_has_no_refusals(tmp_path: Path) -> None:
    assert check_identity(identity(tmp_path), [("cert", "key")]) == []


def test_refusals_are_returned_in_order_with_labels(tmp_path: Path) -> None:
    files = identity(tmp_path)
    files[0].path.write_bytes(b"not a CA")
    files[2].path.chmod(0o644)
    os.mkfifo(tmp_path / "fifo")
    files.append(IdentityFile("audit", tmp_path / "fifo", FileKind.AUDIT_KEY, label="the audit key"))
    found = check_identity(files, [("cert", "key")])
    assert [r.role for r in found] == ["ca", "key", "audit"]
    assert found[1] == Refusal(
        "key",
        f"{files[2].path}: mode 0644 lets other users read it — chmod 600 (systemd's LoadCredential= gives "
        "the service a 0400 copy; the root-owned store is 0600)",
    )
    assert found[2] == Refusal(
        "audit", "the audit key: a FIFO, not a regular file"
    )  # the label, not the path


def test_check_permissions_alone(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_bytes(b"x")
    key.chmod(0o600)
    assert check_permissions(key, secret=True) is None
    key.chmod(0o444)
    assert check_permissions(key, secret=False) is None
    assert check_permissions(key, secret=True) is not None
    assert check_permissions(tmp_path / "absent", secret=False) == f"{tmp_path / 'absent'}: not found"


def _set_acl(path: Path, *entries: tuple[int, int, int]) -> None:
    """A POSIX ACL written as the kernel stores it (what setfacl does): user/group objects, entries, mask."""
    everyone = 0xFFFFFFFF
    base = [(0x01, 4, everyone), *entries, (0x04, 0, everyone), (0x10, 4, everyone), (0x20, 0, everyone)]
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in sorted(base))
    try:
        os.setxattr(path, "system.posix_acl_access", raw)
    except OSError as err:
        pytest.skip(f"no POSIX ACLs here ({err.strerror})")


def test_a_credential_granted_by_acl_as_systemd_does_is_accepted(tmp_path: Path) -> None:
    """systemd writes a credential 0400 and grants the service's user read by an ACL entry where it can
    (tmpfs): the mode then reads 0440, root-owned. That is the daemon's own key, not a leak."""
    key = tmp_path / "key"
    save_private_key(key, generate_device_key())
    key.chmod(0o400)
    _set_acl(key, (0x02, 4, os.geteuid()))
    assert key.stat().st_mode & 0o777 == 0o440
    assert check_permissions(key, secret=True) is None
    _set_acl(key, (0x02, 4, 65534))  # another user named in the ACL
    assert "access control list lets other users or groups read it" in str(
        check_permissions(key, secret=True)
    )
    _set_acl(key, (0x08, 4, 65534))  # a group named in the ACL
    assert check_permissions(key, secret=True) is not None
