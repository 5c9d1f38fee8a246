"""Key and credential files: read the safe way (regular files only, bounded, never blocking), parsed by
``mynabox.payload.keys``, written atomically through ``mynabox.adapters.files``.

Secrets reach the daemon as files (systemd ``LoadCredential=`` puts them in ``$CREDENTIALS_DIRECTORY``), never
through the TOML config. Errors name the file and what is wrong with it, never the bytes in it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from mynabox.adapters.files import write_atomic
from mynabox.payload.keys import (
    KeyFileError,
    Secret,
    parse_audit_key,
    parse_private_key,
    parse_public_key,
    private_key_pem,
    public_key_pem,
)

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
_CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MAX_KEY_FILE = 64 * 1024  # a PEM key or certificate is a few kB; refuse to slurp anything large


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
    _write(path, private_key_pem(key).reveal(), mode=0o600)


def save_public_key(path: Path, key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> None:
    _write(path, public_key_pem(key), mode=0o644)


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
    return parse_audit_key(read_small_file(path), source=str(path))


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


def _write(path: Path, data: bytes, *, mode: int) -> None:
    try:
        write_atomic(path, data, mode=mode)
    except OSError as err:
        raise KeyFileError(f"{path}: cannot write ({err.strerror or type(err).__name__})") from err
