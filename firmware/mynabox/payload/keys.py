"""Key files: EC P-256 private keys (PEM, PKCS#8 written; SEC1 also read), public keys and certificates.

Secrets reach the daemon as files (systemd ``LoadCredential=`` puts them in ``$CREDENTIALS_DIRECTORY``), never
through the TOML config. Errors name the file and what is wrong with it, never the bytes in it; key objects
and :class:`Secret` never print their material.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

T = TypeVar("T")

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
AUDIT_KEY_MIN_BYTES = 32
_CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MAX_KEY_FILE = 64 * 1024  # a PEM key or certificate is a few kB; refuse to slurp anything large


class KeyFileError(Exception):
    """A key or certificate file is missing, unreadable, or not what we need."""


class Secret(Generic[T]):
    """A secret whose ``repr``/``str`` are masked, so it can sit in a config dataclass that gets logged."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable")


def generate_device_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> Secret[bytes]:
    """PKCS#8 PEM, unencrypted: the file's permissions and the credential store protect it."""
    return Secret(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def public_key_pem(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def parse_private_key(data: bytes, *, source: str = "key") -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        # cryptography's messages do not quote the key, but ours stays short and uniform anyway.
        raise KeyFileError(f"{source}: not an unencrypted PEM private key") from err
    return _require_p256_private(key, source)


def parse_public_key(data: bytes, *, source: str = "key") -> ec.EllipticCurvePublicKey:
    """A PEM ``PUBLIC KEY`` (SPKI) or a PEM ``CERTIFICATE`` whose key is P-256."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{source}: not a PEM public key or certificate") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{source}: not an EC P-256 public key")
    return key


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return parse_private_key(read_small_file(path), source=str(path))


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    return parse_public_key(read_small_file(path), source=str(path))


def load_public_keys(directory: Path, *, suffix: str = ".pem") -> dict[str, ec.EllipticCurvePublicKey]:
    """Known device keys for a receiver: one file per device, named ``<device id><suffix>``."""
    if not directory.is_dir():
        raise KeyFileError(f"{directory}: not a directory")
    return {p.name[: -len(suffix)]: load_public_key(p) for p in sorted(directory.glob(f"*{suffix}"))}


def save_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write atomically with mode 0600 from the first byte (no window where the key is world-readable)."""
    _write_atomic(path, private_key_pem(key).reveal(), mode=0o600)


def save_public_key(path: Path, key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> None:
    _write_atomic(path, public_key_pem(key), mode=0o644)


def credential_path(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where systemd put credential ``name`` (``LoadCredential=name:…``)."""
    env = os.environ if environ is None else environ
    if not _CREDENTIAL_NAME.fullmatch(name):
        raise KeyFileError(f"credential name {name!r} is not valid")
    directory = env.get(CREDENTIALS_ENV)
    if not directory:
        raise KeyFileError(
            f"${CREDENTIALS_ENV} is not set: is the service started with LoadCredential={name}?"
        )
    return Path(directory) / name


def load_private_key_credential(
    name: str, environ: Mapping[str, str] | None = None
) -> ec.EllipticCurvePrivateKey:
    return load_private_key(credential_path(name, environ))


def load_audit_key(path: Path) -> Secret[bytes]:
    """The audit chain's HMAC key: raw bytes (at least 32) in a file of its own."""
    data = read_small_file(path)
    if len(data) < AUDIT_KEY_MIN_BYTES:
        raise KeyFileError(f"{path}: an audit key needs at least {AUDIT_KEY_MIN_BYTES} bytes")
    return Secret(data)


def _require_p256_private(key: object, source: str) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{source}: not an EC P-256 private key")
    return key


def read_small_file(
    path: Path, *, limit: int = _MAX_KEY_FILE, what: str = "a key file", follow_symlinks: bool = True
) -> bytes:
    """A key, certificate, credential or config file, refused past `limit` bytes; KeyFileError names the
    file only. Only regular files are read: a FIFO, device, socket or directory is refused without
    blocking (stat first, then open with O_NONBLOCK and check what was opened), so `/dev/zero` or a FIFO
    named as a key cannot hang or exhaust the box. `follow_symlinks=False` refuses a symbolic link."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        _require_regular(path, os.stat(path, follow_symlinks=follow_symlinks), limit, what)
        fd = os.open(path, flags)
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from err
    try:
        _require_regular(path, os.fstat(fd), limit, what)  # the file opened is the file checked
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from err
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise KeyFileError(f"{path}: too large for {what} (more than {limit} bytes)")
    return data


def file_type(mode: int) -> str:
    """What a stat mode is, in words, for refusals."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _require_regular(path: Path, st: os.stat_result, limit: int, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: {file_type(st.st_mode)}, not a regular file")
    if st.st_size > limit:
        raise KeyFileError(f"{path}: too large for {what} ({st.st_size} bytes, at most {limit})")


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode is masked by umask; an existing tmp keeps its old mode
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        raise KeyFileError(f"{path}: cannot write ({err.strerror or type(err).__name__})") from err
