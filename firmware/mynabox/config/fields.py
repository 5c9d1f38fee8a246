"""Typed, checked reads from the TOML tables: every problem is collected, none raised."""

from __future__ import annotations

import dataclasses
import enum
import itertools
import logging
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mynabox.adapters.keyfiles import CREDENTIALS_ENV, credential_path
from mynabox.config.model import Credential, Issue
from mynabox.payload.keys import KeyFileError
from mynabox.record import record

log = logging.getLogger(__name__)
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_PEM = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]+-----|PRIVATE KEY|PUBLIC KEY|CERTIFICATE-----")
_KEYLIKE = re.compile(r"[A-Za-z0-9+/_=-]{40,}")
_HEXLIKE = re.compile(r"(0x)?[0-9A-Fa-f]{48,}")
_RUN = re.compile(r"[A-Za-z0-9+/=_-]{12,}")  # base64 and base64url; spaces, dots and colons end a run
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
# Hex pasted in groups of equal size (openssl's 8f:14:e4, 8f14 e45f, 8f14e45f-ce…); the first and last group
# may be cut short. A compressed IPv6 address (fe80::1ff:fe23:4567:890a) has unequal groups and stays visible.
_HEX_GROUPS = [
    re.compile(rf"[0-9A-Fa-f]{{1,{n}}}(?:{sep}[0-9A-Fa-f]{{{n}}})+(?:{sep}[0-9A-Fa-f]{{1,{n}}})?")
    for sep in (":", r"\s", "-")
    for n in (2, 4, 8)
]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_IN_PATH = "holds a control character (e.g. NUL): not a usable path"
E = TypeVar("E", bound=enum.StrEnum)
T = TypeVar("T")
HIDDEN = "<hidden>"
NOT_SHOWN = "(value not shown)"


class _Required(enum.Enum):
    REQUIRED = enum.auto()


REQUIRED = _Required.REQUIRED


@record
class FileCheck:
    key: str
    kind: str  # a key of load.FILE_KINDS: "file", "ca", "cert", "tls_key", "private_key", "public_key", ...
    path: Path | None = None
    credential: Credential | None = None


def expand_home(value: str) -> Path | None:
    """`~` and `~user` expanded, or None when that home cannot be found (e.g. `~0`: no user named 0)."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        return None


def has_control(value: str) -> bool:
    """NUL (the OS refuses such a path with a ValueError) and the other C0 controls (typos at best)."""
    return _CONTROL.search(value) is not None


def type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}
    return "a table" if isinstance(value, dict) else names.get(type(value), "a date/time")


def looks_secret(value: str) -> bool:
    """Refused as key material: PEM, or a value that is all base64 (40+, line breaks allowed) or all hex
    (24+ bytes, colon-, space- or dash-grouped allowed), also behind a `~`."""
    if _PEM.search(value):
        return True
    body = re.sub(r"\s", "", value).lstrip("~")
    if _HEXLIKE.fullmatch(re.sub(r"[\s:-]", "", body)):
        return True
    return (
        _KEYLIKE.fullmatch(body) is not None
        and not body.startswith("/")
        and any(c.isdigit() for c in body)
        and any(c.isalpha() for c in body)
    )


def may_be_secret(text: str) -> bool:
    """Broader than `looks_secret`: could `text` hold key material anywhere (16+ hex digits, plain or in equal
    groups, or a run of base64 whose letters and digits change class about as often as random data does, or
    that holds all three classes)?
    Decides only what is *shown*: such text is never echoed in an error or printout."""
    if _PEM.search(text) or _HEX_RUN.search(text):
        return True
    for pattern in _HEX_GROUPS:
        if any(sum(c in string.hexdigits for c in m.group(0)) >= 16 for m in pattern.finditer(text)):
            return True
    joined = re.sub(r"[\r\n]+", "", text)  # a PEM body's lines are one key
    return any(_mixed(run) or _all_classes(run) for run in _RUN.findall(text) + _RUN.findall(joined))


def _all_classes(run: str) -> bool:
    """16+ characters with digits, upper and lower case, or with five of each case: random base64 nearly
    always is, and so this catches the pieces whose class changes happen to be few (1 in 120 of 16–24
    characters before). Names rarely are (CamelCase has one capital a word); hiding one costs its echo."""
    if len(run) < 16:
        return False
    upper, lower = sum(c.isupper() for c in run), sum(c.islower() for c in run)
    return (upper >= 5 and lower >= 5) or (upper > 0 and lower > 0 and any(c.isdigit() for c in run))


def _mixed(run: str) -> bool:
    """Some 16-character window (the whole run if shorter) changes between digit, upper and lower case at
    least 0.3 times per character: random base64 does ≈ 0.6, words, names and paths rarely 0.2. A window, so
    a benign prefix (a directory) cannot dilute a key pasted after it."""

    def cls(c: str) -> int:
        return 0 if c.isdigit() else 1 if c.isupper() else 2 if c.islower() else 3

    changes = [int(3 != cls(a) != cls(b) != 3) for a, b in itertools.pairwise(run)]
    width = min(15, len(changes))  # 15 pairs = 16 characters
    window = sum(changes[:width])
    best = window
    for i in range(width, len(changes)):
        window += changes[i] - changes[i - width]
        best = max(best, window)
    return best >= 0.3 * (width + 1)


def label(name: str) -> str:
    """A TOML key or table name as shown in an issue: itself, or HIDDEN when it could be a secret or
    holds control characters."""
    return name if name.isprintable() and len(name) <= 64 and not may_be_secret(name) else HIDDEN


def show(value: object) -> str:
    if isinstance(value, str) and may_be_secret(value):
        return NOT_SHOWN
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def suggest(key: str, known: list[str]) -> str:
    import difflib  # only for a config with a mistake: 0.2 MB the running daemon does without

    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"


def defaults(model: type) -> dict[str, object]:
    """A config dataclass's defaults by field name: the one place they are written. A field without one is
    required (a field with a default factory has none here: the config uses none)."""
    return {f.name: f.default for f in dataclasses.fields(model) if f.default is not dataclasses.MISSING}


class Fields:
    """Typed reads from one TOML table into the fields of `model` (a config dataclass), whose defaults are
    the values of keys left out; problems go into a shared list instead of being raised."""

    def __init__(self, section: str, table: Mapping[str, object], ctx: Context, model: type) -> None:
        self._section = section
        self._table = table
        self._ctx = ctx
        self._defaults = defaults(model)
        self._seen: list[str] = []
        self._absent = section not in ctx.present  # a missing section is reported once, not key by key

    def _issue(self, key: str, problem: str, hint: str = "") -> None:
        self._ctx.issues.append(Issue(f"{self._section}.{key}", problem, hint))

    def _default(self, key: str, kind: type[T]) -> T | _Required:
        value = self._defaults.get(key, REQUIRED)
        if isinstance(value, kind):
            return value
        if value is REQUIRED or value is None:  # None: optional_*() handle the key's absence
            return REQUIRED
        raise TypeError(f"{self._section}.{key}: the dataclass default is not {kind.__name__}")

    def _get(self, key: str) -> object:
        self._seen.append(key)
        return self._table.get(key, REQUIRED)

    def _usable(self, key: str, value: object) -> bool:
        """False when missing-and-required or already reported as a secret-looking value."""
        if f"{self._section}.{key}" in self._ctx.poisoned:
            return False
        if value is REQUIRED:
            if not self._absent:
                self._issue(key, "missing (required)")
            return False
        return True

    def retired(self, key: str, why: str) -> None:
        """A key an older firmware read and this one does not: accepted whatever its value, and said (with
        `why`), not refused like an unknown key. A box keeps its config across updates: refusing the key
        would stop the new firmware's daemon (exit 78), and the health check would roll it back every time."""
        if self._get(key) is not REQUIRED:
            log.warning("config: %s.%s is no longer read (%s): remove it", self._section, key, why)

    def finish(self) -> None:
        for key in self._table:
            if key not in self._seen and f"{self._section}.{key}" not in self._ctx.poisoned:
                self._issue(label(key), "unknown key", suggest(key, self._seen))

    def string(self, key: str, *, pattern: re.Pattern[str] = _LABEL, hint: str = "") -> str:
        default = self._default(key, str)
        value = self._get(key)
        if value is REQUIRED and default is not REQUIRED:
            return default
        if not self._usable(key, value):
            return ""
        if not isinstance(value, str):
            self._issue(key, f"expected a string, got {type_name(value)}")
            return ""
        if pattern.fullmatch(value) is None:
            self._issue(key, f"{show(value)} is not allowed", hint)
            return ""
        return value

    def optional_string(self, key: str, *, pattern: re.Pattern[str] = _LABEL, hint: str = "") -> str | None:
        if key not in self._table:
            self._seen.append(key)
            return None
        return self.string(key, pattern=pattern, hint=hint)

    def boolean(self, key: str) -> bool:
        default = self._default(key, bool)
        if default is REQUIRED:
            raise TypeError(f"{self._section}.{key}: a boolean needs a default")
        value = self._get(key)
        if value is REQUIRED or f"{self._section}.{key}" in self._ctx.poisoned:
            return default
        if not isinstance(value, bool):
            self._issue(key, f"expected true or false, got {type_name(value)}")
            return default
        return value

    def choice(self, key: str, choices: type[E]) -> E:
        """One of the words of the `choices` enum, as its member."""
        default = self._default(key, choices)
        if default is REQUIRED:
            raise TypeError(f"{self._section}.{key}: a choice needs a default")
        value = self._get(key)
        if value is REQUIRED:
            return default
        if not self._usable(key, value):
            return default
        if not isinstance(value, str) or value not in {c.value for c in choices}:
            self._issue(key, f"{show(value)} is not one of {', '.join(repr(c.value) for c in choices)}")
            return default
        return choices(value)

    def integer(self, key: str, lo: int, hi: int, *, problem: str = "", hint: str = "") -> int:
        default = self._default(key, int)
        value = self._get(key)
        if value is REQUIRED and default is not REQUIRED:
            return default
        if not self._usable(key, value):
            return lo
        if isinstance(value, str) and re.fullmatch(r"0[xX][0-9a-fA-F]+", value):
            value = int(value, 16)  # "0x3c" as a string is how addresses are often written
        if isinstance(value, bool) or not isinstance(value, int):
            self._issue(key, f"expected an integer, got {type_name(value)}")
            return lo
        if not lo <= value <= hi:
            self._issue(key, problem.format(value=value) or f"{value} is out of range ({lo}..{hi})", hint)
            return lo
        return value

    def number(self, key: str, lo: float, hi: float) -> float:
        default = self._default(key, float)
        if default is REQUIRED:
            raise TypeError(f"{self._section}.{key}: a number needs a default")
        value = self._get(key)
        if value is REQUIRED or not self._usable(key, value):
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._issue(key, f"expected a number, got {type_name(value)}")
            return default
        if not lo <= value <= hi:
            self._issue(key, f"{value} is out of range ({lo:g}..{hi:g})")
            return default
        return float(value)

    def path(self, key: str, *, check: str = "") -> Path:
        default = self._default(key, Path)
        value = self._get(key)
        if value is REQUIRED and default is not REQUIRED:
            return default
        if not self._usable(key, value):
            return Path()
        if not isinstance(value, str) or not value:
            self._issue(key, f"expected a path string, got {type_name(value)}")
            return Path()
        if has_control(value):
            self._issue(key, CONTROL_IN_PATH)
            return Path()
        expanded = expand_home(value)
        if expanded is None:
            self._issue(key, f"{show(value)}: no such user's home directory", "write the path out in full")
            return Path()
        path = self._ctx.base_dir / expanded
        if check:
            self._ctx.file_checks.append(FileCheck(f"{self._section}.{key}", check, path=path))
        return path

    def optional_path(self, key: str, *, check: str = "") -> Path | None:
        if key not in self._table:
            self._seen.append(key)
            return None
        return self.path(key, check=check)

    def credential(self, key: str, *, check: str = "credential", matches: str = "") -> Credential:
        """`matches`: the key (same table) of the certificate this credential's private key must match."""
        value = self._get(key)
        cred = Credential("invalid", self._ctx.credentials_dir)
        if not self._usable(key, value):
            return cred
        if not isinstance(value, str):
            self._issue(key, f"expected a credential name, got {type_name(value)}")
            return cred
        try:
            credential_path(value, {CREDENTIALS_ENV: "/"})
        except KeyFileError:
            self._issue(key, f"{show(value)} is not a credential name", "letters, digits, '_', '.', '-'")
            return cred
        cred = Credential(value, self._ctx.credentials_dir)
        self._ctx.file_checks.append(FileCheck(f"{self._section}.{key}", check, credential=cred))
        if matches:
            self._ctx.pairs.append((f"{self._section}.{matches}", f"{self._section}.{key}"))
        return cred


@dataclass
class Context:
    base_dir: Path
    credentials_dir: Path | None
    issues: list[Issue] = dataclasses.field(default_factory=list)
    poisoned: set[str] = dataclasses.field(default_factory=set)
    file_checks: list[FileCheck] = dataclasses.field(default_factory=list)
    pairs: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (certificate key, private key)
    present: set[str] = dataclasses.field(default_factory=set)
