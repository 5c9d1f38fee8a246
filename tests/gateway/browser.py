"""Debian's Chromium, headless, driven by selenium through Debian's chromedriver (no driver download)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# The machine has no network but loopback: without these Chromium keeps trying to reach its own services.
_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


@contextlib.contextmanager
def headless_chromium(width: int = 800, height: int = 1200) -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, (
        "chromium and chromium-driver (Debian) are installed by scripts/install-deps.sh"
    )
    profile = tempfile.mkdtemp(prefix="mynabox-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (*_ARGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)
