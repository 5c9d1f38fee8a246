"""The receiver's JSON sink: one private file per message id, rewritten (not doubled) on redelivery."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.receiving import DEV, NOW, seal  # tests/ is on sys.path
from mynabox.gateway.core import Accepted, ReceiverCore
from mynabox.gateway.sink import write_json
from mynabox_testkit.broker import DeliveryKit
from support.lazyfs import LazyMount, fuse_available


def test_json_out_is_private_and_idempotent(kit: DeliveryKit, core: ReceiverCore, tmp_path: Path) -> None:
    verdict = core.handle(f"mynabox/{DEV}/summary", seal(kit, body={"k": "値"}), now=NOW)
    assert isinstance(verdict, Accepted)
    first = write_json(tmp_path / "out", verdict.opened)
    second = write_json(tmp_path / "out", verdict.opened)
    assert first == second == tmp_path / "out" / DEV / f"{verdict.opened.message_id}.json"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert '"k": "値"' in first.read_text(encoding="utf-8")
    assert len(list((tmp_path / "out" / DEV).iterdir())) == 1


@pytest.mark.skipif(fuse_available() is not None, reason=f"FUSE: {fuse_available()}")
def test_json_out_fsyncs_its_directory(kit: DeliveryKit, core: ReceiverCore, tmp_path: Path) -> None:
    """The file is renamed into place: without a directory fsync a power cut could lose the rename."""
    verdict = core.handle(f"mynabox/{DEV}/summary", seal(kit, body={"k": "値"}), now=NOW)
    assert isinstance(verdict, Accepted)
    with LazyMount(tmp_path / "disk", tmp_path / "mnt") as mount:
        (tmp_path / "mnt" / DEV).mkdir(mode=0o700)
        written = write_json(tmp_path / "mnt", verdict.opened)
        stats = mount.ask("stats")
        assert stats["dir_fsyncs"] == 1 and stats["pending_files"] == 0
        mount.power_cut()
    assert '"k": "値"' in (tmp_path / "disk" / DEV / written.name).read_text(encoding="utf-8")
