"""A real browser for the catalog tests: headless Chromium from Debian (`chromium`,
`chromium-driver`, installed by .ci/services.sh), driven with Selenium through an
explicit chromedriver path, so Selenium Manager downloads nothing.

    browser          a session-scoped selenium WebDriver (fresh profile, no background
                     network: the machine's closed network refuses Chromium's own calls)
    screenshot(name) saves a PNG under tests/_artifacts/screenshots/ (gitignored); the
                     path is printed at the end of the run

Without Chromium the tests skip, unless MLENV_REQUIRE_BROWSER=1 (CI) makes that an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MLENV_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MLENV_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent / "_artifacts" / "screenshots"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--window-size=1280,1000",
]  # fmt: skip
_saved: list[Path] = []


def _unavailable(what: str):
    hint = "apt-get install chromium chromium-driver (.ci/services.sh does)"
    if os.environ.get("MLENV_REQUIRE_BROWSER", "") == "1":
        pytest.fail(f"{what} (MLENV_REQUIRE_BROWSER=1, so this is an error; {hint})", pytrace=False)
    pytest.skip(f"{what} ({hint})")


@pytest.fixture(scope="session")
def browser_session(tmp_path_factory):
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            _unavailable(f"{path} is missing")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(browser_session):
    """The session's browser with its console log drained: what a test reads from
    get_log("browser") happened during that test (a page an earlier test loaded on
    purpose, e.g. a refused record answered with 502, is not reported again)."""
    browser_session.get_log("browser")
    return browser_session


@pytest.fixture(scope="session")
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(driver, name: str, height: int | None = None) -> Path:
        """A PNG of what the browser shows now: the whole page, or its top `height` pixels."""
        if height is None:
            height = int(driver.execute_script("return Math.max(document.body.scrollHeight, 600)")) + 40
        driver.set_window_size(1280, min(height, 6000))
        path = SCREENSHOTS / f"{name}.png"
        driver.save_screenshot(str(path))
        driver.set_window_size(1280, 1000)
        _saved.append(path)
        return path

    return save


def pytest_terminal_summary(terminalreporter):
    if _saved:
        terminalreporter.write_line(f"catalog screenshots ({len(_saved)}): {SCREENSHOTS}")
