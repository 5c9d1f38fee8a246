"""What RAUC's streaming needs from the box (mynabox.update.stream decides whether to stream).

- `rauc_version()`: `rauc --debug --version` (RAUC ≥ 1.12 names its build options there).
- `nbd_present()`: the kernel's network block device (RAUC streams through one): `/sys/module/nbd`
  exists when the module is loaded (the image's modules-load.d loads it) or built in.
- `sandbox_tls(...)`: RAUC runs its streaming helper as an unprivileged user (system.conf's
  `[streaming] sandbox-user`), and that helper opens the TLS files itself. The box's client key belongs to
  the daemon's user, readable by no one else; so for the one install the key, certificate and CA are
  copied into a fresh directory under /run (tmpfs: the key never reaches a card), owned by the sandbox
  user, key 0400, and removed afterwards whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mynabox.adapters.keyfiles import read_small_file
from mynabox.payload.keys import KeyFileError
from mynabox.record import record

NBD_MODULE = Path("/sys/module/nbd")
MAX_PEM_BYTES = 1 << 20


class StreamingError(Exception):
    """The streaming install cannot be prepared; the message says why."""


@record
class SandboxTls:
    ca: Path
    cert: Path
    key: Path

    def rauc_args(self) -> list[str]:
        return ["--tls-ca", str(self.ca), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def rauc_version(timeout_s: float = 30.0) -> str:
    """RAUC's `--debug --version` output (stdout and stderr), "" if it cannot run."""
    try:
        done = subprocess.run(
            ["rauc", "--debug", "--version"], capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr)[:65536].decode("utf-8", "replace")


def nbd_present(module: Path = NBD_MODULE) -> bool:
    return module.is_dir()


@contextlib.contextmanager
def sandbox_tls(user: str, *, ca: Path, cert: Path, key: Path, run_dir: Path) -> Iterator[SandboxTls]:
    """Copies of the box's TLS files that only `user` (RAUC's streaming helper) can read, for the block."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise StreamingError(f"RAUC's streaming user {user!r} does not exist on this box") from None
    if account.pw_uid == 0:
        raise StreamingError("RAUC's streaming user must not be root")
    try:
        data = {
            "ca.pem": read_small_file(ca, limit=MAX_PEM_BYTES, what="a CA file"),
            "client.pem": read_small_file(cert, limit=MAX_PEM_BYTES, what="a certificate"),
            "client.key": read_small_file(key),
        }
    except KeyFileError as err:
        raise StreamingError(f"the box's TLS files cannot be read ({err})") from None
    try:
        directory = Path(tempfile.mkdtemp(prefix="mynabox-stream-", dir=run_dir))  # 0700, ours
    except OSError as err:
        raise StreamingError(f"no private directory in {run_dir} ({err.strerror})") from None
    try:
        for name, content in data.items():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(directory / name, flags, 0o400), "wb") as f:
                f.write(content)
                os.fchown(f.fileno(), account.pw_uid, account.pw_gid)
        os.chown(directory, account.pw_uid, account.pw_gid)
    except OSError as err:
        shutil.rmtree(directory, ignore_errors=True)
        raise StreamingError(
            f"the TLS files cannot be handed to RAUC's streaming user ({err.strerror})"
        ) from None
    try:
        yield SandboxTls(directory / "ca.pem", directory / "client.pem", directory / "client.key")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
