"""The box's identity files checked together: TLS CAs, certificates and keys, envelope keys, the audit key.

`check_identity(files, pairs)` reads each file the safe way (regular files only, bounded, see
`keyfiles.read_small_file`), checks who may read or replace it, parses it as what it must be (a CA bundle, a
certificate of an accepted key type, an unencrypted private key, a P-256 envelope key, an audit key), and
checks each key against its certificate. It returns refusals as data, never raises on a bad file:
check-config, the daemon's start and provisioning all use it. Refusals name the file (or the label given for
it) and what is wrong, never the bytes in it.

Permissions: a secret file must be the file itself (no symbolic link), owned by root or by the user reading
it, with no group or other access (systemd's ``LoadCredential=`` hands the service a 0400 copy, owned by it
or granted to it alone by an ACL entry, in a 0500 directory; the root-owned store it copies from is 0600 in
0700), in a directory that no other user can write. A public file (CA, certificate, gateway key) may be read
by anyone but not written by other users.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mynabox.adapters.keyfiles import file_type, read_small_file
from mynabox.payload.keys import AUDIT_KEY_MIN_BYTES, KeyFileError, parse_private_key, parse_public_key
from mynabox.record import record

MAX_KEY_BYTES = 64 * 1024  # a PEM key or certificate chain is a few kB
MAX_CA_BYTES = 1024 * 1024  # a CA bundle may hold the public roots (Debian's is ≈ 220 kB)
MAX_CERTS = 500  # certificates in one CA bundle or chain
MIN_RSA_BITS = 2048
_TLS_CURVES = (ec.SECP256R1, ec.SECP384R1)


class FileKind(enum.Enum):
    CA = "a CA certificate bundle"
    CERT = "a certificate"
    TLS_KEY = "a TLS private key"
    DEVICE_KEY = "an envelope signing key (EC P-256)"
    GATEWAY_KEY = "an envelope public key (EC P-256)"
    AUDIT_KEY = "an audit key"
    SECRET = "a secret file"  # noqa: S105 -- any other credential: checked as a secret, not parsed
    FILE = "a file"

    @property
    def secret(self) -> bool:
        return self in (FileKind.TLS_KEY, FileKind.DEVICE_KEY, FileKind.AUDIT_KEY, FileKind.SECRET)


@record
class IdentityFile:
    """One file to check: `role` is how refusals name it (e.g. a config key); `label` how they show the path
    (None: the path itself; give a label when the path must not be shown)."""

    role: str
    path: Path
    kind: FileKind
    label: str | None = None

    @property
    def shown(self) -> str:
        return str(self.path) if self.label is None else self.label


@record
class Refusal:
    role: str
    problem: str

    def __str__(self) -> str:
        return f"{self.role}: {self.problem}"


class _Refused(Exception):
    pass


def check_identity(files: Sequence[IdentityFile], pairs: Sequence[tuple[str, str]] = ()) -> list[Refusal]:
    """Every problem with `files`, in order; `pairs` are (certificate role, key role) that must match."""
    refusals: list[Refusal] = []
    parsed: dict[str, object] = {}
    for item in files:
        try:
            parsed[item.role] = _check_one(item)
        except _Refused as err:
            refusals.append(Refusal(item.role, str(err)))
    by_role = {item.role: item for item in files}
    for cert_role, key_role in pairs:
        cert, key = parsed.get(cert_role), parsed.get(key_role)
        if isinstance(cert, list) and cert and key is not None and not _same_key(cert[0], key):
            shown = by_role[cert_role].shown
            refusals.append(
                Refusal(key_role, f"{by_role[key_role].shown}: does not match the certificate {shown}")
            )
    device = next((v for r, v in parsed.items() if by_role[r].kind is FileKind.DEVICE_KEY), None)
    gateways = [(r, v) for r, v in parsed.items() if by_role[r].kind is FileKind.GATEWAY_KEY]
    for role, value in gateways:
        if isinstance(device, ec.EllipticCurvePrivateKey) and _spki(device.public_key()) == _spki(value):
            shown = by_role[role].shown
            refusals.append(Refusal(role, f"{shown}: is this box's own device key, not the gateway's"))
    return refusals


def check_permissions(path: Path, *, secret: bool, shown: str | None = None) -> str | None:
    """What is wrong with who may read or replace `path` (None: nothing). Reusable for any file."""
    name = str(path) if shown is None else shown
    try:
        st = os.lstat(path)
    except OSError as err:
        if err.errno == errno.EACCES:  # e.g. check-config as a user on root's 0700 credential store
            return f"{name}: cannot read (Permission denied) — check as root, or as the service under systemd"
        return f"{name}: not found" if err.errno == errno.ENOENT else f"{name}: cannot read ({err.strerror})"
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        if secret:
            return (
                f"{name}: a symbolic link — a key must be the file itself (a link can be pointed anywhere; "
                "LoadCredential= copies files)"
            )
        try:
            st = os.stat(path)
        except OSError as err:
            return f"{name}: a symbolic link to nothing ({err.strerror})"
        mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return f"{name}: {file_type(st.st_mode)}, not a regular file"
    me = os.geteuid()
    if secret:
        acl = _acl(path)
        if acl is None and mode & 0o077:
            return (
                f"{name}: mode {mode:04o} lets other users {'write' if mode & 0o022 else 'read'} it — "
                "chmod 600 (systemd's LoadCredential= gives the service a 0400 copy; the root-owned store "
                "is 0600)"
            )
        if acl is not None and (mode & 0o007 or _acl_lets_others(acl, {me, st.st_uid})):
            return (
                f"{name}: its access control list lets other users or groups read it — setfacl -b, chmod 600 "
                "(LoadCredential= grants the service's user alone)"
            )
        if st.st_uid not in (0, me):
            return f"{name}: owned by uid {st.st_uid}, neither root nor this user (uid {me})"
    elif mode & 0o002:
        return f"{name}: mode {mode:04o} lets any user replace it — chmod o-w"
    elif st.st_uid not in (0, me):
        return (
            f"{name}: owned by uid {st.st_uid}, who could replace it (neither root nor this user, uid {me})"
        )
    return _check_directory(path.parent, secret=secret, owner=st.st_uid, shown=name)


_ACL_XATTR = "system.posix_acl_access"
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP = 0x02, 0x04, 0x08


def _acl(path: Path) -> list[tuple[int, int, int]] | None:
    """The POSIX ACL's entries (tag, perm, id), or None without one. With an ACL the mode's group bits are
    its mask, not the group's: systemd grants a credential to the service's user by an ACL entry where the
    file system allows (the file then shows 0440 owned by root), by chown where not (0400, owned by it)."""
    try:
        raw = os.getxattr(path, _ACL_XATTR, follow_symlinks=False)
    except OSError:
        return None  # no ACL, or a file system without them
    if len(raw) < 4 or (len(raw) - 4) % 8:
        return [(_ACL_GROUP, 0o7, 0)]  # unreadable: counted as letting others in
    return [struct.unpack_from("<HHI", raw, 4 + 8 * i) for i in range((len(raw) - 4) // 8)]


def _acl_lets_others(acl: list[tuple[int, int, int]], allowed: set[int]) -> bool:
    return any(
        perm and (tag in (_ACL_GROUP_OBJ, _ACL_GROUP) or (tag == _ACL_USER and ident not in allowed))
        for tag, perm, ident in acl
    )


def _check_directory(directory: Path, *, secret: bool, owner: int, shown: str) -> str | None:
    try:
        st = os.stat(directory)
    except OSError as err:
        return f"{shown}: its directory cannot be read ({err.strerror})"
    mode = stat.S_IMODE(st.st_mode)
    writable = mode & (0o022 if secret else 0o002)
    sticky_and_ours = mode & stat.S_ISVTX and owner in (0, os.geteuid())  # others cannot replace it
    if writable and not sticky_and_ours:
        what = "credentials" if secret else "its"
        return (
            f"{shown}: {what} directory {directory} (mode {mode:04o}) can be written by other users, who "
            "could replace the file — chmod go-w"
        )
    return None


def _check_one(item: IdentityFile) -> object:
    problem = check_permissions(item.path, secret=item.kind.secret, shown=item.shown)
    if problem is not None:
        raise _Refused(problem)
    limit = MAX_CA_BYTES if item.kind is FileKind.CA else MAX_KEY_BYTES
    try:
        data = read_small_file(
            item.path, limit=limit, what=item.kind.value, follow_symlinks=not item.kind.secret
        )
    except KeyFileError as err:
        raise _Refused(_relabel(str(err), item)) from None
    try:
        return _parse(item, data)
    except KeyFileError as err:
        raise _Refused(_relabel(str(err), item)) from None


def _relabel(message: str, item: IdentityFile) -> str:
    return message.replace(str(item.path), item.shown, 1) if item.label is not None else message


def _parse(item: IdentityFile, data: bytes) -> object:
    name = item.shown
    if item.kind is FileKind.CA or item.kind is FileKind.CERT:
        certs = _certificates(data, name, item.kind)
        if item.kind is FileKind.CERT:
            _accepted_tls_key(certs[0].public_key(), name, "its key")
        return certs
    if item.kind is FileKind.TLS_KEY:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFileError(f"{name}: not an unencrypted PEM private key") from None
        _accepted_tls_key(key.public_key(), name, "key")
        return key
    if item.kind is FileKind.DEVICE_KEY:
        return parse_private_key(data, source=name)
    if item.kind is FileKind.GATEWAY_KEY:
        return parse_public_key(data, source=name)
    if item.kind is FileKind.AUDIT_KEY:
        if len(data) < AUDIT_KEY_MIN_BYTES:
            raise KeyFileError(f"{name}: an audit key needs at least {AUDIT_KEY_MIN_BYTES} bytes")
        return None
    return None


def _certificates(data: bytes, name: str, kind: FileKind) -> list[x509.Certificate]:
    if data.count(b"-----BEGIN") > MAX_CERTS:
        raise KeyFileError(f"{name}: more than {MAX_CERTS} PEM blocks")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KeyFileError(f"{name}: not {kind.value} in PEM (-----BEGIN CERTIFICATE-----)") from None
    for cert in certs:
        try:
            cert.public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(f"{name}: a certificate whose key cannot be read") from None
    return certs


def _accepted_tls_key(public: object, name: str, what: str) -> None:
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, _TLS_CURVES):
        return
    if isinstance(public, rsa.RSAPublicKey) and public.key_size >= MIN_RSA_BITS:
        return
    raise KeyFileError(f"{name}: {what} is not EC P-256/P-384 or RSA ≥ {MIN_RSA_BITS} bits")


def _spki(public: object) -> bytes:
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _same_key(cert: object, key: object) -> bool:
    assert isinstance(cert, x509.Certificate)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return _spki(cert.public_key()) == _spki(key.public_key())
