"""What the box checks in a bundle before RAUC installs it, on top of RAUC's own checks.

RAUC verifies the signature (keyring, `check-purpose=codesign`, at the bundle's signing time) and the
compatible string; `rauc info --output-format=json` then gives the signed manifest's compatible and version.
We refuse, with a reason and before anything is written, another board's bundle and a version older than the
running firmware (unless fleet ops force it: a deliberate downgrade). Versions are dotted numbers
(`0.1.0`, PEP 440 release segments as the firmware's `__version__`); anything else is refused.

Pure: RAUC's output in, a decision out.
"""

from __future__ import annotations

import json
import re

from mynabox.record import record
from mynabox.update.text import printable

MAX_INFO_BYTES = 64 * 1024
_VERSION = re.compile(r"(0|[1-9][0-9]{0,5})(\.(0|[1-9][0-9]{0,5})){0,3}")


class BundleRefused(Exception):
    """The bundle must not be installed; the message says why."""


@record
class BundleInfo:
    compatible: str
    version: str
    build: str | None


def parse_info(text: str) -> BundleInfo:
    """`rauc info --output-format=json` of a bundle whose signature RAUC accepted."""
    if len(text) > MAX_INFO_BYTES:
        raise BundleRefused("rauc info output too long")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BundleRefused("rauc info output is not JSON") from None
    if not isinstance(data, dict):
        raise BundleRefused("rauc info output is not a JSON object")
    compatible, version, build = data.get("compatible"), data.get("version"), data.get("build")
    if not isinstance(compatible, str) or not compatible:
        raise BundleRefused("the bundle names no compatible board")
    if not isinstance(version, str) or not version:
        raise BundleRefused("the bundle carries no version")
    if build is not None and not isinstance(build, str):
        raise BundleRefused("the bundle's build is not a string")
    return BundleInfo(printable(compatible), printable(version), None if build is None else printable(build))


def version_key(version: str) -> tuple[int, ...]:
    if not _VERSION.fullmatch(version):
        raise BundleRefused(f"version {printable(version, 40)!r} is not dotted numbers (like 0.1.0)")
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts))


def check(info: BundleInfo, *, compatible: str, running: str, force_older: bool = False) -> str:
    """The verdict for an install, or BundleRefused with the reason; returns what will happen."""
    if info.compatible != compatible:
        raise BundleRefused(f"bundle is for {info.compatible!r}, this box is {compatible!r}")
    new, old = version_key(info.version), version_key(running)
    if new < old and not force_older:
        raise BundleRefused(f"bundle version {info.version} is older than the running {running} (not forced)")
    if new == old:
        return f"reinstall of {info.version}"
    return f"{'downgrade (forced)' if new < old else 'update'} {running} -> {info.version}"
