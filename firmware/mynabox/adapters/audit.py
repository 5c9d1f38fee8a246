"""The audit log on disk: chained records (``mynabox.payload.audit``) as JSON lines, fsynced per append.

Why a JSON-lines file rather than a SQLite table: the line format is already the chain's canonical form (the
hash covers exactly what is on the line), so ``jq``, ``grep`` or a gateway in any language can read and check
it without our code; it is append-only by construction (``O_APPEND``), and a read a minute needs no index.
Each append is written with one ``write`` and fsynced before it returns, so an appended record survives a
power cut. A crash in the middle of a write leaves at most one torn line at the end (no newline yet): on open
it is cut off - that record's ``append`` never returned, so nothing promised is lost. Anything else that does
not parse is not a torn write but damage, and is reported, never repaired silently.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mynabox.adapters import files
from mynabox.payload.audit import (
    GENESIS,
    AuditFormatError,
    AuditRecord,
    ChainedAudit,
    ChainVerdict,
    chain,
    verify_chain,
    verify_lines,
)
from mynabox.payload.keys import Secret

_MAX_LINE = 64 * 1024


class AuditLogError(Exception):
    """The audit log cannot be read or written (I/O error, or a damaged line that is not a torn tail)."""


class AuditLog:
    def __init__(self, path: Path, *, key: Secret[bytes] | None = None) -> None:
        self._path = Path(path)
        self._key = key
        self._lock = threading.Lock()
        self._head = GENESIS
        self._count = 0
        self._recover()

    def __repr__(self) -> str:
        return f"AuditLog({str(self._path)!r}, entries={self._count})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def head(self) -> str:
        """Hash of the last entry (GENESIS when empty): the anchor a gateway can keep."""
        return self._head

    def __len__(self) -> int:
        return self._count

    def append(self, record: AuditRecord) -> ChainedAudit:
        with self._lock:
            entry = chain(self._head, record, key=self._key)
            data = (entry.to_json_line() + "\n").encode("utf-8")
            try:
                files.append(self._path, data, mode=0o640)
            except OSError as err:
                raise AuditLogError(f"audit log {self._path}: cannot append ({_os_reason(err)})") from err
            self._head = entry.hash
            self._count += 1
            return entry

    def entries(self) -> list[ChainedAudit]:
        """Every entry, parsed; a damaged line raises :class:`AuditLogError` (``verify`` says where)."""
        try:
            return [ChainedAudit.from_json_line(line) for line in self._lines()]
        except AuditFormatError as err:
            raise AuditLogError(f"audit log {self._path}: damaged entry ({err})") from err

    def verify(self, *, expected_head: str | None = None) -> ChainVerdict:
        return verify_lines(self._lines(), key=self._key, expected_head=expected_head)

    def _lines(self) -> list[bytes]:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise AuditLogError(f"audit log {self._path}: cannot read ({_os_reason(err)})") from err
        return [line for line in data.split(b"\n") if line.strip()]

    def _recover(self) -> None:
        """Cut a torn last line, then continue the chain from the last stored hash."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as err:
            raise AuditLogError(f"audit log {self._path}: cannot read ({_os_reason(err)})") from err
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            try:
                with self._path.open("r+b") as f:
                    f.truncate(keep)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as err:
                raise AuditLogError(
                    f"audit log {self._path}: cannot cut a torn line ({_os_reason(err)})"
                ) from err
            data = data[:keep]
        lines = [line for line in data.split(b"\n") if line.strip()]
        if not lines:
            return
        if len(lines[-1]) > _MAX_LINE:
            raise AuditLogError(f"audit log {self._path}: last entry is oversized")
        try:
            last = ChainedAudit.from_json_line(lines[-1])
        except AuditFormatError as err:
            raise AuditLogError(f"audit log {self._path}: last entry is damaged ({err})") from err
        verdict = verify_chain([last], key=self._key, start=last.prev_hash)
        if not verdict.ok:
            raise AuditLogError(f"audit log {self._path}: last entry does not verify ({verdict.reason})")
        self._head = last.hash
        self._count = len(lines)


def verify_file(
    path: Path, *, key: Secret[bytes] | None = None, expected_head: str | None = None
) -> tuple[ChainVerdict, str]:
    """Check a log without opening it for writing (nothing is cut or repaired); returns (verdict, head).

    A torn last line (no newline: a crash mid-append) is left out, as ``AuditLog`` would on open.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AuditLogError(f"audit log {path}: cannot read ({_os_reason(err)})") from err
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    lines = [line for line in data.split(b"\n") if line.strip()]
    verdict = verify_lines(lines, key=key, expected_head=expected_head)
    head = GENESIS
    if verdict.ok and lines:
        head = ChainedAudit.from_json_line(lines[-1]).hash
    return verdict, head


def _os_reason(err: OSError) -> str:
    return err.strerror or type(err).__name__
