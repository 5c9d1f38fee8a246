"""Stream or fetch (mynabox.update.stream): RAUC's own words about its build, the kernel's nbd, the mode asked
for; the streaming helper's user from the image's system.conf."""

from __future__ import annotations

import pytest

from mynabox.update import stream
from mynabox.update.bundle import BundleRefused

from .conftest import SYSTEM_CONF

# `rauc --debug --version` of trixie's RAUC 1.13 (the debug line since 1.12) and of Debian 12's 1.8.
RAUC_113 = (
    "rauc-Message: 09:12:01.514: Debug log domains: 'rauc'\n"
    "(rauc:4711): rauc-DEBUG: 09:12:01.514: 1.13 create=1 emmc-boot=1 gpt=1 json=1 network=1 service=1"
    " streaming=1\nrauc 1.13\n"
)
RAUC_113_NO_STREAMING = RAUC_113.replace("streaming=1", "streaming=0")
RAUC_18 = "rauc-Message: 08:56:18.560: Debug log domains: 'rauc'\nrauc 1.8\n"

BOTH = stream.Capability(streaming=True, nbd=True)


def test_what_rauc_says_of_its_build() -> None:
    assert stream.rauc_streams(RAUC_113)
    assert not stream.rauc_streams(RAUC_113_NO_STREAMING)
    assert not stream.rauc_streams(RAUC_18)  # no build options printed: counted as without
    assert not stream.rauc_streams("")
    assert not stream.rauc_streams("x-streaming=1")  # another word
    assert not stream.rauc_streams(RAUC_113 + "streaming=0\n")  # contradicting lines: not trusted


def test_auto_streams_only_where_both_parts_are_there() -> None:
    assert stream.choose("auto", BOTH).stream
    no_rauc = stream.choose("auto", stream.Capability(streaming=False, nbd=True))
    assert not no_rauc.stream and "built without streaming" in no_rauc.why and "fetched" in no_rauc.why
    no_nbd = stream.choose("auto", stream.Capability(streaming=True, nbd=False))
    assert not no_nbd.stream and "no nbd" in no_nbd.why
    neither = stream.choose("auto", stream.Capability(streaming=False, nbd=False))
    assert "without streaming and the kernel has no nbd" in neither.why


def test_never_fetches_and_always_refuses_rather_than_fetch() -> None:
    assert not stream.choose("never", BOTH).stream
    assert stream.choose("always", BOTH).stream
    with pytest.raises(
        BundleRefused, match=r"streaming required \(--stream always\) but the kernel has no nbd"
    ):
        stream.choose("always", stream.Capability(streaming=True, nbd=False))
    with pytest.raises(BundleRefused, match="must be one of auto, always, never"):
        stream.choose("sometimes", BOTH)


def test_the_streaming_user_from_system_conf() -> None:
    assert stream.sandbox_user(SYSTEM_CONF.read_text()) == "rauc-stream"  # the image's own
    assert stream.sandbox_user("[system]\ncompatible=x\n") == "nobody"  # RAUC's default
    for bad in ("root", "a b", "../x", "-x", "x" * 40, ""):
        with pytest.raises(BundleRefused, match="not an unprivileged user name"):
            stream.sandbox_user(f"[streaming]\nsandbox-user={bad}\n")
    with pytest.raises(BundleRefused, match="cannot be read"):
        stream.sandbox_user("no section header\n")
