"""The pages in a real browser: Debian's headless Chromium, driven by selenium, against the page server.

DOM checks (sections, flags, every medication), screenshot goldens at a tablet's width
(``MYNABOX_UPDATE_GOLDEN=1`` rewrites them), A4 printing, and the retention that makes a page disappear.
"""

from __future__ import annotations

import base64
import io
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.print_page_options import PrintOptions

from mynabox.gateway.pages import PageServer, PageStore
from mynabox.payload.seal import Opened
from mynabox.summary.flags import derive_flags
from mynabox_testkit.patients import PATIENTS, patient, summary_for

from .browser import headless_chromium
from .conftest import DAY, FORM_ORDER, NOW

pytestmark = pytest.mark.stack

GOLDEN = Path(__file__).parent / "golden"
TABLET_WIDTH = 800
# Anti-aliased text may land a pixel apart between runs of the same Chromium; layout changes move far more.
MAX_DIFFERING = 0.00005


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with headless_chromium(TABLET_WIDTH) as chrome:
        yield chrome


@pytest.fixture(scope="module")
def served(opened_by_patient: dict[str, Opened]) -> Iterator[tuple[str, PageStore, Clock]]:
    clock = Clock(NOW)
    store = PageStore(retention=timedelta(hours=24), clock=clock)
    for i, key in enumerate(p.key for p in PATIENTS):
        clock.now = NOW + timedelta(minutes=i)
        store.add(opened_by_patient[key])
    clock.now = NOW + timedelta(hours=1)
    server = PageServer(store)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", store, clock
    finally:
        server.stop()


def _full_page_png(chrome: webdriver.Chrome) -> Image.Image:
    # The message id is random: blank its line so the golden holds the layout, not the id.
    chrome.execute_script("for (const e of document.querySelectorAll('.meta')) e.style.visibility='hidden'")
    height = int(chrome.execute_script("return document.documentElement.scrollHeight"))
    chrome.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": TABLET_WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        return Image.open(io.BytesIO(chrome.get_screenshot_as_png())).convert("L")
    finally:
        chrome.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _match_golden(image: Image.Image, name: str) -> None:
    path = GOLDEN / f"{name}.png"
    if os.environ.get("MYNABOX_UPDATE_GOLDEN"):
        image.save(path, optimize=True)
    expected = Image.open(path).convert("L")
    assert image.size == expected.size, f"{name}: page size {image.size} != golden {expected.size}"
    diff = ImageChops.difference(image, expected).point(lambda v: 255 if v > 48 else 0)
    differing = 1 - diff.histogram()[0] / (image.width * image.height)
    assert differing <= MAX_DIFFERING, (
        f"{name}: {differing:.2%} of pixels differ from the golden (box {diff.getbbox()})"
    )


def test_the_days_list_links_every_message(
    browser: webdriver.Chrome, served: tuple[str, PageStore, Clock]
) -> None:
    base, store, _ = served
    browser.get(base + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == len(PATIENTS) == len(store)
    assert "鈴木 正子" in browser.find_element(By.TAG_NAME, "body").text
    _match_golden(_full_page_png(browser), "index")


@pytest.mark.parametrize("key", [p.key for p in PATIENTS])
def test_each_patients_page(
    key: str,
    browser: webdriver.Chrome,
    served: tuple[str, PageStore, Clock],
    opened_by_patient: dict[str, Opened],
) -> None:
    base, _, _ = served
    browser.get(f"{base}/m/{opened_by_patient[key].message_id}")
    summary = summary_for(patient(key), DAY)
    if summary is None:
        todo = browser.find_element(By.ID, "todo").text
        assert "マイナ保険証" in todo and "聴取" in todo
    else:
        flags = [
            e.get_attribute("data-flag") for e in browser.find_elements(By.CSS_SELECTOR, "#flags [data-flag]")
        ]
        assert flags == [f.code.value for f in derive_flags(summary, today=DAY)]
        shown = browser.find_elements(By.CSS_SELECTOR, "#medications tbody tr")
        assert len(shown) == len(summary.medications)
        listed = "\n".join(r.text for r in shown)
        assert all(m.drug_name in listed for m in summary.medications)
        sections = [e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, "body > section")]
        assert [s for s in sections if s not in ("allergies", "read")] == FORM_ORDER
        # the flags are the first thing under the title, and visibly red-bordered
        first = browser.find_element(By.CSS_SELECTOR, "header + *")
        assert first.get_attribute("id") == "flags"
    _match_golden(_full_page_png(browser), key)


def test_prints_on_a4(
    browser: webdriver.Chrome, served: tuple[str, PageStore, Clock], opened_by_patient: dict[str, Opened]
) -> None:
    base, _, _ = served
    browser.get(f"{base}/m/{opened_by_patient['warfarin-elderly'].message_id}")
    options = PrintOptions()
    options.page_width, options.page_height = 21.0, 29.7
    pdf = base64.b64decode(browser.print_page(options))
    assert pdf.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 1 <= pages <= 3, f"the warfarin patient's summary printed on {pages} A4 pages"
    boxes = {tuple(float(v) for v in m.split()) for m in re.findall(rb"/MediaBox\s*\[([^\]]+)\]", pdf)}
    assert boxes and all(abs(w - 595.3) < 2 and abs(h - 841.9) < 2 for _, _, w, h in boxes), boxes  # A4 in pt


def test_pages_are_gone_after_the_retention(
    served: tuple[str, PageStore, Clock], opened_by_patient: dict[str, Opened]
) -> None:
    base, store, clock = served
    url = f"{base}/m/{opened_by_patient['dialysis'].message_id}"
    with urllib.request.urlopen(url) as response:
        assert response.status == 200
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
    before = clock.now
    clock.now = NOW + timedelta(hours=25)
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url)
        assert err.value.code == 404
        assert len(store) == 0
    finally:
        clock.now = before


def test_browser_sees_no_request_but_our_own(
    browser: webdriver.Chrome, served: tuple[str, PageStore, Clock], opened_by_patient: dict[str, Opened]
) -> None:
    base, _, _ = served
    browser.get(f"{base}/m/{opened_by_patient['allergy'].message_id}")
    entries = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert entries == []
