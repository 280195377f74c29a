"""The browser tests: Debian's Chromium driven by Playwright for Python (no browser download), against the
end-to-end stack of tests/support/app_stack.py (the HTTP server and the worker as processes, real MariaDB and
Redis) on moto server only: the page exercises the HTTP API, which the e2e suite already runs on both
emulators.

One browser for the session, a fresh context (cookies, storage) per test: each test starts signed out and
signs in through the page's own sign-in form (`sign_in`), as a user does. Screenshots go to the test's tmp
dir, and also to $SCREENSHOT_DIR when it is set (`SCREENSHOT_DIR=docs/` refreshes docs/seat-map.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)  # an asynchronous booking waits for the worker

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, base_url: str) -> Iterator[object]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    yield page
    context.close()
    # Requests refused (the 409 the tests provoke) or cut off (a lost answer) show in the console too.
    assert not [e for e in errors if not e.startswith("Failed to load resource")], errors


@pytest.fixture()
def sign_in() -> Callable[..., None]:
    """Signs `user` in through the page's sign-in form (the local stage's POST /dev/token), and waits until
    the page says so and lets them book."""
    from playwright.sync_api import expect

    def sign_in(page, user: str) -> None:
        page.fill("#user-id", user)
        page.click("#sign-in")
        expect(page.locator("#account")).to_contain_text(f"Signed in as {user}")
        expect(page.locator("#book")).to_be_enabled()

    return sign_in


@pytest.fixture()
def screenshot(tmp_path: Path) -> Callable[..., Path]:
    def take(page, name: str, publish: bool = True) -> Path:
        path = tmp_path / name
        page.screenshot(path=str(path), full_page=True)
        if publish and os.environ.get("SCREENSHOT_DIR"):
            target = Path(os.environ["SCREENSHOT_DIR"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / name)
        return path

    return take
