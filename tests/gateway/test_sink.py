"""The receiver's JSON sink: one private file per message id, rewritten (not doubled) on redelivery."""

from __future__ import annotations

import stat
from pathlib import Path

from gateway.receiving import DEV, NOW, seal  # tests/ is on sys.path
from mynabox.gateway.core import Accepted, ReceiverCore
from mynabox.gateway.sink import write_json
from mynabox.testing.broker import DeliveryKit


def test_json_out_is_private_and_idempotent(kit: DeliveryKit, core: ReceiverCore, tmp_path: Path) -> None:
    verdict = core.handle(f"mynabox/{DEV}/summary", seal(kit, body={"k": "値"}), now=NOW)
    assert isinstance(verdict, Accepted)
    first = write_json(tmp_path / "out", verdict.opened)
    second = write_json(tmp_path / "out", verdict.opened)
    assert first == second == tmp_path / "out" / DEV / f"{verdict.opened.message_id}.json"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert '"k": "値"' in first.read_text(encoding="utf-8")
    assert len(list((tmp_path / "out" / DEV).iterdir())) == 1
