"""Hostile text that the schema allows, in Debian's headless Chromium at a tablet's width (800 px): stacks of
combining marks must not paint over or move the flags, and 200-character unbroken words must not widen the
page past the screen."""

from __future__ import annotations

import copy
import io
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from PIL import Image, ImageChops
from selenium import webdriver
from selenium.webdriver.common.by import By

from mynabox.gateway.pages import PageServer, PageStore
from mynabox.gateway.text import visible
from mynabox.payload.envelope import Kind
from mynabox.summary.model import Summary
from mynabox_testkit.patients import patient, summary_for

from .browser import headless_chromium
from .conftest import DAY, NOW, body_for, seal_and_open

pytestmark = pytest.mark.stack

TABLET_WIDTH = 800
# Four stacks of 45 marks (ones Debian's fonts draw) on a letter: 184 characters, inside the schema's 200.
STACKS = ("a" + "\u0301\u0300\u0302\u0303\u0304" * 9) * 4
ALLERGY = {
    "allergies": [{"substance": "ペニシリン", "category": "drug", "reaction": None}],
    "contraindications": [],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with headless_chromium(TABLET_WIDTH) as chrome:
        yield chrome


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[str, PageStore]]:
    store = PageStore(retention=timedelta(hours=24))
    server = PageServer(store)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", store
    finally:
        server.stop()


def _warfarin_doc() -> dict[str, Any]:
    summary = summary_for(patient("warfarin-elderly"), DAY)
    assert summary is not None
    doc = summary.to_json()
    doc["allergies"] = copy.deepcopy(ALLERGY)
    return doc


def _show(browser: webdriver.Chrome, pages: tuple[str, PageStore], doc: dict[str, Any], seq: int) -> str:
    base, store = pages
    Summary.from_json(doc)  # within the schema: what a device may send
    _, body = body_for(patient("warfarin-elderly"))
    opened = seal_and_open(Kind.SUMMARY, {**body, "summary": doc}, seq=seq)
    store.add(opened)
    browser.get(f"{base}/m/{opened.message_id}")
    return opened.message_id


def _shot(browser: webdriver.Chrome, css: str) -> tuple[dict[str, int], Image.Image]:
    element = browser.find_element(By.CSS_SELECTOR, css)
    return element.rect, Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")


def _differing(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size
    return sum(1 for v in ImageChops.difference(a, b).convert("L").get_flattened_data() if v)


def test_stacked_marks_in_the_allergy_flag_do_not_paint_over_the_flag_above(
    browser: webdriver.Chrome, pages: tuple[str, PageStore]
) -> None:
    plain = _warfarin_doc()
    _show(browser, pages, plain, 1)
    rect, label = _shot(browser, '[data-flag="anticoagulant"]')
    hostile = _warfarin_doc()
    hostile["allergies"]["allergies"][0]["substance"] = STACKS
    hostile["allergies"]["allergies"][0]["reaction"] = STACKS
    _show(browser, pages, hostile, 2)
    assert browser.find_elements(By.CSS_SELECTOR, '[data-flag="allergy"]')  # the stacks are in the flags box
    hostile_rect, hostile_label = _shot(browser, '[data-flag="anticoagulant"]')
    assert hostile_rect == rect  # not moved
    assert _differing(hostile_label, label) == 0, "the 抗凝固薬 flag is painted over"


def test_stacked_marks_anywhere_else_leave_the_flags_box_as_it_was(
    browser: webdriver.Chrome, pages: tuple[str, PageStore]
) -> None:
    _show(browser, pages, _warfarin_doc(), 3)
    rect, box = _shot(browser, "#flags")
    hostile = _warfarin_doc()
    hostile["allergies"]["contraindications"] = [{"drug_name": STACKS, "reason": STACKS}]
    for m in hostile["medications"]:
        m["dose"], m["prescriber"], m["pharmacy"] = STACKS, STACKS, STACKS
    for v in hostile["visits"]:
        v["facility"] = v["department"] = STACKS
    hostile["patient"]["name"] = hostile["patient"]["kana"] = STACKS[:92]
    _show(browser, pages, hostile, 4)
    hostile_rect, hostile_box = _shot(browser, "#flags")
    assert hostile_rect == rect
    assert _differing(hostile_box, box) == 0, "text outside the flags box paints over it"


def _every_text(doc: dict[str, Any], word: str, name: str) -> None:
    doc["patient"]["name"] = doc["patient"]["kana"] = name
    for key in ("visits", "dispensings", "medications", "surgeries", "treatments", "dialyses"):
        for record in doc[key]:
            for field, value in record.items():
                if isinstance(value, str) and field not in ("date", "yj_code", "kind"):
                    record[field] = word
    doc["allergies"] = {
        "allergies": [{"substance": word, "category": "drug", "reaction": word}],
        "contraindications": [{"drug_name": word, "reason": word}],
    }


@pytest.mark.parametrize("word", ["W" * 200, "0" * 200, "ｗ" * 200, "https://" + "a" * 192])
def test_unbroken_words_keep_the_page_inside_the_tablet(
    browser: webdriver.Chrome, pages: tuple[str, PageStore], word: str
) -> None:
    doc = _warfarin_doc()
    _every_text(doc, word, word[:100])
    _show(browser, pages, doc, 5)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= TABLET_WIDTH, f"the page is {width} px wide"
    # every column is still on screen, the last ones of the medications included
    for heading in browser.find_elements(By.CSS_SELECTOR, "#medications th"):
        assert heading.rect["x"] + heading.rect["width"] <= TABLET_WIDTH
    browser.get(pages[0] + "/")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= TABLET_WIDTH, f"the list is {width} px wide"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_stacked_marks_in_the_list_leave_the_row_above_as_it_was(browser: webdriver.Chrome) -> None:
    """In the list (newest first) an older patient's name sits under a newer one's flags: its marks stay in
    their cell."""
    _, body = body_for(patient("warfarin-elderly"))
    newer = seal_and_open(Kind.SUMMARY, {**body, "summary": _warfarin_doc()}, seq=10)
    hostile = STACKS[:92]
    # the same text as shown, without its marks: the columns come out as wide, only the marks differ
    plain = "".join(c for c in unicodedata.normalize("NFD", visible(hostile)) if not unicodedata.combining(c))
    shots = []
    for name in (plain, hostile):
        doc = _warfarin_doc()
        doc["patient"]["name"] = doc["patient"]["kana"] = name
        older = seal_and_open(Kind.SUMMARY, {**body, "summary": doc}, seq=11)
        clock = Clock(NOW)
        store = PageStore(retention=timedelta(hours=24), clock=clock)
        store.add(older)
        clock.now = NOW + timedelta(minutes=5)
        store.add(newer)
        server = PageServer(store)
        server.start()
        try:
            browser.get(f"http://127.0.0.1:{server.port}/")
            shots.append(_shot(browser, "tbody tr:first-child"))
        finally:
            server.stop()
    (rect, row), (hostile_rect, hostile_row) = shots
    assert hostile_rect == rect
    assert _differing(hostile_row, row) == 0, "an older row paints over the newer one's flags"
