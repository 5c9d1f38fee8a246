"""How `mynabox update install URL` gets the bundle: RAUC's own HTTP streaming, or fetched whole first.

Streaming (RAUC ≥ 1.7, built with `-Dstreaming=true`): RAUC reads the bundle from the update server with
HTTP range requests, through an unprivileged helper (system.conf's `[streaming] sandbox-user`) behind a
kernel network block device (`nbd`). With an adaptive bundle (`adaptive=block-hash-index` in the manifest's
image section, made by make-bundle) RAUC then reads only the 4 KiB blocks that neither slot already holds:
a firmware-only change downloads a small part of the bundle. Nothing is stored on the state partition.

Fetching (the fallback): the whole bundle over HTTPS into the state partition, then installed as a file.
Used where the box's RAUC cannot stream: built without it (Debian 12's 1.8), or no nbd in the kernel.

`auto` streams where the box can and fetches otherwise; `always` refuses rather than fetch (fleet ops on a
thin link); `never` always fetches. Pure: RAUC's own words and what the kernel has in, the choice out.
"""

from __future__ import annotations

import configparser
import re

from mynabox.record import record
from mynabox.update import raucconf
from mynabox.update.bundle import BundleRefused

MODES = ("auto", "always", "never")
DEFAULT_SANDBOX_USER = "nobody"  # RAUC's own default (meson's streaming_user)
# `rauc --debug --version`: RAUC ≥ 1.12 prints its build options on a debug line ("… streaming=1 …").
_FEATURE = re.compile(r"(?<![\w-])streaming=([01])\b")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@record
class Capability:
    streaming: bool  # the box's RAUC was built with streaming
    nbd: bool  # the kernel has its network block device (module loaded or built in)


@record
class Choice:
    stream: bool
    why: str


def rauc_streams(version_output: str) -> bool:
    """Whether `rauc --debug --version` says RAUC was built with streaming. A RAUC before 1.12 prints no
    build options (Debian 12's 1.8 has no streaming): counted as without, so the box fetches (which works
    either way)."""
    found = _FEATURE.findall(version_output)
    return bool(found) and all(flag == "1" for flag in found)


def choose(mode: str, can: Capability) -> Choice:
    """Stream or fetch; BundleRefused when streaming is required (`always`) and this box cannot."""
    if mode not in MODES:
        raise BundleRefused(f"--stream must be one of {', '.join(MODES)}")
    missing = [
        reason
        for ok, reason in (
            (can.streaming, "this box's RAUC was built without streaming"),
            (can.nbd, "the kernel has no nbd (network block device) module loaded"),
        )
        if not ok
    ]
    if mode == "never":
        return Choice(False, "streaming not wanted (--stream never)")
    if not missing:
        return Choice(True, "RAUC streams it: only the blocks this box lacks are read")
    if mode == "always":
        raise BundleRefused(f"streaming required (--stream always) but {' and '.join(missing)}")
    return Choice(False, f"{' and '.join(missing)}: the whole bundle is fetched first")


def sandbox_user(system_conf: str) -> str:
    """The user RAUC's streaming helper runs as (system.conf's `[streaming] sandbox-user`, else RAUC's
    default): the box's TLS key must be readable by that user alone during the install."""
    try:
        conf = raucconf.parse(system_conf)
    except configparser.Error:
        raise BundleRefused("RAUC's system.conf cannot be read") from None
    user = conf.get("streaming", "sandbox-user", fallback=DEFAULT_SANDBOX_USER).strip()
    if not _USER.fullmatch(user) or user == "root":
        raise BundleRefused("system.conf's [streaming] sandbox-user is not an unprivileged user name")
    return user
