"""The whole handoff: a tap on the daemon, the summary through the broker to `mynabox receive --pages` (a real
subprocess), and the page as a tablet's browser shows it (Debian's Chromium through selenium)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from gateway.browser import headless_chromium  # tests/gateway (tests/ is on sys.path)
from mynabox_testkit.stack import BoxStack
from support.notify import NotifySocket
from support.wait import wait_for

from .test_daemon import MYNABOX, start_daemon, tap

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack() -> Iterator[BoxStack]:
    with BoxStack(device_id="amb-pages", consent_default="oral") as box_stack:
        assert box_stack.pcscd is not None
        box_stack.pcscd.use_in_process()
        yield box_stack


def _receiver(stack: BoxStack, tmp_path: Path, err: Path) -> subprocess.Popen[bytes]:
    kit = stack.kit
    assert kit is not None and stack.broker is not None
    files = kit.pki.client(kit.gateway)
    args = [
        MYNABOX, "receive", "--broker", f"127.0.0.1:{stack.broker.port}", "--ca", str(kit.pki.ca_cert),
        "--cert", str(files.cert), "--key", str(files.key), "--gateway-key", str(kit.gateway_key_file),
        "--device-keys", str(kit.device_keys_dir), "--state-dir", str(tmp_path / "gw"),
        "--client-id", "gw-pages", "--pages", "127.0.0.1:0",
    ]  # fmt: skip
    with err.open("ab") as out:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out)


def test_a_tap_becomes_a_page_on_the_tablet(stack: BoxStack, tmp_path: Path) -> None:
    err, log = tmp_path / "receiver.log", tmp_path / "daemon.log"
    receiver = _receiver(stack, tmp_path, err)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = start_daemon(stack, notify, log)
    try:
        assert wait_for(lambda: re.search(r"pages on (http://\S+/)", err.read_text()) is not None, 20)
        base = re.search(r"pages on (http://\S+/)", err.read_text())
        assert base is not None
        assert wait_for(lambda: "receiver connected" in err.read_text(), 20), err.read_text()
        assert wait_for(lambda: notify.seen("READY=1") == 1, 20), log.read_text()
        card = tap(stack, "warfarin-elderly")
        try:
            assert wait_for(lambda: "accepted summary" in err.read_text(), 20), log.read_text()
        finally:
            card.remove()

        with headless_chromium() as chrome:
            chrome.get(base.group(1))
            links = chrome.find_elements(By.CSS_SELECTOR, "tbody tr a")
            assert len(links) == 1 and "鈴木 正子" in links[0].text
            links[0].click()
            assert [
                e.get_attribute("data-flag")
                for e in chrome.find_elements(By.CSS_SELECTOR, "#flags [data-flag]")
            ] == ["anticoagulant"]
            assert "ワルファリンK錠1mg「F」" in chrome.find_element(By.ID, "medications").text
        # The page's patient data is in the receiver's memory only: not in its log, not in its state dir.
        assert "鈴木" not in err.read_text()
        stored = [p for p in (tmp_path / "gw").rglob("*") if p.is_file()]
        assert stored and not any("鈴木".encode() in p.read_bytes() for p in stored)
    finally:
        for proc in (daemon, receiver):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert receiver.returncode == 0, err.read_text()
