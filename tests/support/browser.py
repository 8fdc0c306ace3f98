"""A real browser for the dashboard's tests: Debian's chromium, headless, driven by Playwright.

The browser is the distribution's (`apt-get install chromium`, listed in .ci/install-deps); tests
never download one. Without chromium or the playwright package the browser tests are skipped,
except under CI=true, where that is a failure.

Every browser test leaves a screenshot of its last page in test-artifacts/screenshots/ at the
repository root, or in $CRUNCH_TEST_ARTIFACTS/screenshots/ when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
# Background networking and component updates would reach for the internet from a test.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]
TIMEOUT_MS = 15_000


def chromium_path() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


def artifacts_dir() -> Path:
    return Path(os.environ.get("CRUNCH_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "screenshots"


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[test]'"
    if not os.access(chromium_path(), os.X_OK):
        return "chromium is not installed: .ci/install-deps installs it (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium per test module (each test gets a fresh context: no shared cookies).

    Not one per session: Playwright's synchronous API keeps an asyncio loop running in the main
    thread while it is started, and every later test calling asyncio.run() would fail."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a new browser context; its screenshot is saved when the test ends, passed or failed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        directory = artifacts_dir()
        directory.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])
        try:
            opened.screenshot(path=str(directory / f"{name}.png"), full_page=True)
        finally:
            context.close()


def log_in(page: Page, base_url: str, token: str) -> None:
    """Open the login URL the embedded service prints; the dashboard keeps the token in its cookie."""
    page.goto(f"{base_url}/?token={token}")
    assert page.url == f"{base_url}/", f"login did not land on the list: {page.url}"


def expect(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Playwright's `expect`, imported when first used (so collecting the tests needs no playwright)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


def is_red(css_colour: str) -> bool:
    red, green, blue = _channels(css_colour)
    return red >= 150 and green <= 90 and blue <= 90


def is_amber(css_colour: str) -> bool:
    red, green, blue = _channels(css_colour)
    return red >= 200 and 120 <= green <= 210 and blue <= 90


def _channels(css_colour: str) -> tuple[int, int, int]:
    """`rgb(198, 40, 40)` → (198, 40, 40)."""
    numbers = [int(n) for n in re.findall(r"\d+", css_colour)[:3]]
    assert len(numbers) == 3, css_colour
    return numbers[0], numbers[1], numbers[2]
