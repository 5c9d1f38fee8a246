"""A private pcscd with the vsmartcard virtual reader, beside any system pcscd.

Debian's pcscd (1.9.9) always binds `/run/pcscd/pcscd.comm`. We run it in a mount namespace of its
own (`unshare -m`) where a temporary run directory is bind-mounted over `/run/pcscd`, and point
clients at that directory's socket with `PCSCLITE_CSOCK_NAME`. Its reader.conf directory holds one
vpcd entry on a free port, so the virtual card of a test never meets the machine's own readers.

How the client library reads `PCSCLITE_CSOCK_NAME` (pcsc-lite 1.9.9, verified by
tests/adapters/test_pcsc.py::test_socket_name_is_read_once_per_process): `getSocketName()` caches
the value in a static buffer the first time any call needs the socket, and never looks again. So
one process can talk to one pcscd socket *path* for its whole life. pcscd itself may stop and start
again on that path (a new context then connects fine), which is why every `PrivatePcscd` of a
process reuses the same run directory by default: in-process pyscard clients keep working across
instances, provided only one runs at a time. Tests that need two daemons at once use subprocesses.

The vpcd driver exposes two slots: ports N and N+1 (readers "<name> 00 00" and "<name> 00 01").
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from mynabox_testkit.ports import free_port

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
DEFAULT_FRIENDLY_NAME = "mynabox vpcd"
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"

# One run directory per process, shared by its successive instances (see the module docstring).
_process_run_dir: Path | None = None
_running: PrivatePcscd | None = None
_lock = threading.Lock()


class PcscdError(RuntimeError):
    """The private pcscd could not be started."""


def free_port_pair() -> int:
    """A port N such that N and N+1 are both free (vpcd listens on both, one per slot)."""
    return free_port(2)


def process_run_dir() -> Path:
    """The run directory every PrivatePcscd of this process uses unless told otherwise."""
    global _process_run_dir  # noqa: PLW0603 - one per process by design
    if _process_run_dir is None:
        _process_run_dir = Path(tempfile.mkdtemp(prefix=f"mynabox-pcscd-{os.getpid()}-"))
        atexit.register(shutil.rmtree, _process_run_dir, True)
    return _process_run_dir


class PrivatePcscd:
    """Runs `pcscd -f` with our reader.conf in its own mount namespace. Use as a context manager.

    `vpcd=False` starts the daemon without the virtual reader (a box whose reader is unplugged).
    """

    def __init__(
        self,
        *,
        vpcd_port: int | None = None,
        friendly_name: str = DEFAULT_FRIENDLY_NAME,
        run_dir: Path | None = None,
        vpcd: bool = True,
        apdu_log: bool = False,
        debug: bool = False,
        log_path: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.vpcd_port = vpcd_port if vpcd_port is not None else free_port_pair()
        self.friendly_name = friendly_name
        self.run_dir = run_dir if run_dir is not None else process_run_dir()
        self.vpcd = vpcd
        self._apdu_log = apdu_log
        self._debug = debug
        self._start_timeout = start_timeout
        # pcscd parses every file of its config directory, so the log must live outside it.
        self._work_dir = Path(tempfile.mkdtemp(prefix="mynabox-pcscd-work-"))
        self._conf_dir = self._work_dir / "reader.conf.d"
        self._conf_dir.mkdir()
        self.log_path = log_path if log_path is not None else self._work_dir / "pcscd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: int | None = None

    # -- what clients need ------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "pcscd.comm"

    @property
    def env(self) -> dict[str, str]:
        """Environment additions for client processes (pyscard, OpenSC, `mynabox read`)."""
        return {SOCKET_ENV: str(self.socket_path)}

    def reader_name(self, slot: int = 0) -> str:
        """The PC/SC name of a vpcd slot (pcscd appends the slot and an index)."""
        return f"{self.friendly_name} 00 {slot:02d}"

    def wait_empty(self, slot: int = 0, timeout_s: float = 10.0) -> None:
        """Wait until pcscd has registered that the slot's card left (in-process PC/SC client).

        vpcd quirk: pcscd notices a removal only on its next presence poll; a card presented before
        that is taken for the old one and never announced. pcsc-lite counts insertions and removals in
        the top 16 bits of the reader state, so an even count with the slot empty means it is done.
        """
        from smartcard import scard

        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise RuntimeError("pcscd not reachable")
        try:
            state = scard.SCARD_STATE_UNAWARE
            deadline = time.monotonic() + timeout_s
            while not (state & scard.SCARD_STATE_EMPTY and (state >> 16) % 2 == 0):
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    raise TimeoutError(f"slot {slot} still holds a card")
                hresult, states = scard.SCardGetStatusChange(
                    context, left_ms, [(self.reader_name(slot), state)]
                )
                if hresult != scard.SCARD_S_SUCCESS:
                    raise TimeoutError(f"slot {slot} still holds a card")
                state = states[0][1] & ~scard.SCARD_STATE_CHANGED
        finally:
            scard.SCardReleaseContext(context)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def use_in_process(self) -> None:
        """Point this process's PC/SC client library at this daemon.

        Must happen before the process's first PC/SC call; afterwards the library ignores changes.
        """
        os.environ[SOCKET_ENV] = str(self.socket_path)

    # -- lifecycle --------------------------------------------------------------------------

    def set_vpcd(self, enabled: bool) -> None:
        """Whether the next (re)start has the virtual reader configured."""
        self.vpcd = enabled

    def _write_conf(self) -> None:
        for old in self._conf_dir.glob("*.conf"):
            old.unlink()
        if self.vpcd:
            (self._conf_dir / "vpcd.conf").write_text(
                f'FRIENDLYNAME "{self.friendly_name}"\n'
                f"DEVICENAME /dev/null:0x{self.vpcd_port:04X}\n"
                f"LIBPATH {VPCD_DRIVER}\n"
                f"CHANNELID 0x{self.vpcd_port:04X}\n"
            )

    def start(self) -> None:
        global _running  # noqa: PLW0603 - guards the shared run directory
        if self.running():
            return
        if not VPCD_DRIVER.exists():
            raise PcscdError(f"vpcd driver missing: {VPCD_DRIVER} (install vsmartcard-vpcd)")
        with _lock:
            other = _running
            if other is not None and other is not self and other.run_dir == self.run_dir and other.running():
                raise PcscdError("another PrivatePcscd of this process already uses this run directory")
            _running = self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # A killed daemon leaves its socket and pid file behind; a new one must not see them.
        for stale in ("pcscd.comm", "pcscd.pid", "pcscd.pub"):
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / stale).unlink()
        self._write_conf()
        # One retry: a start that hangs before opening its socket was seen once in many runs.
        for _attempt in range(2):
            self._launch()
            if self._wait_ready():
                return
            self.kill()
        tail = self.log_text()[-800:]
        raise PcscdError(
            f"pcscd did not open {self.socket_path} in {self._start_timeout} s; log tail:\n{tail}"
        )

    def _launch(self) -> None:
        flags = ["--foreground", "--config", str(self._conf_dir)]
        if self._apdu_log:
            flags.append("--apdu")
        if self._debug:
            flags.append("--debug")
        # In a private mount namespace, our run directory stands in for /run/pcscd.
        inner = 'mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd && shift && exec pcscd "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh"]
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._proc = subprocess.Popen(
                [*command, str(self.run_dir), *flags],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(log)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise PcscdError(f"pcscd exited with {self._proc.returncode}; log: {self.log_path}")
            if self._accepts():
                return True
            time.sleep(0.02)
        return False

    def _accepts(self) -> bool:
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait: pcscd removes its socket and tells clients the service stopped."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the daemon dies as in a crash, leaving its socket file behind."""
        self._end(signal.SIGKILL, 5.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        self._proc = None

    def restart(self, *, kill: bool = False) -> None:
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the daemon and remove its config and log (the process run directory stays)."""
        global _running  # noqa: PLW0603
        self.stop()
        with _lock:
            if _running is self:
                _running = None
        shutil.rmtree(self._work_dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> PrivatePcscd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
