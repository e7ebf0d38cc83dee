"""Browser tests: Playwright driving Debian's ``chromium`` (browser downloads are not possible here).

A test module uses it with::

    from browser import browser, live_web, page, shot  # noqa: F401  (fixtures)
    pytestmark = browser_required

Without a chromium binary the module is skipped with the reason (a fresh machine's ``make test``),
unless ``CI=true``: there a missing browser fails the tests instead of hiding them.
``CHROMIUM_PATH`` names another binary. Every test using ``page`` fails on any console error or
uncaught page error, and leaves a screenshot in ``test-artifacts/screenshots/<test>.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def chromium_path() -> str | None:
    """The chromium binary: ``CHROMIUM_PATH``, else ``chromium`` / ``chromium-browser`` on PATH."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _playwright_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


def _why_not() -> str | None:
    return _playwright_missing() or (None if chromium_path() else
                                     "no chromium binary (apt-get install chromium, or set CHROMIUM_PATH)")


# Outside CI a machine without the browser skips; in CI the fixture below fails instead.
browser_required = pytest.mark.skipif(not IN_CI and _why_not() is not None,
                                      reason=f"browser tests: {_why_not()}")


def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]


@pytest.fixture(scope="module")
def browser():
    """One headless chromium per test module."""
    reason = _why_not()
    if reason:
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield launched
        launched.close()


class PageErrors(list):
    """Console errors and uncaught exceptions of one page, as text."""


@pytest.fixture
def page(browser, request):
    """A fresh browser context and page; the test fails on any console or page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors = PageErrors()
    tab.on("console", lambda message: errors.append(f"console.{message.type}: {message.text} "
                                                    f"({message.location.get('url', '')})")
           if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    tab.errors = errors
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        tab.screenshot(path=str(SCREENSHOTS / f"{_slug(request.node.nodeid)}.png"), full_page=True)
    finally:
        context.close()
    assert not errors, "errors in the browser:\n" + "\n".join(errors)


def shot(tab, name: str) -> Path:
    """Save a full-page screenshot named ``name`` (one per page a test visits)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def live_web(env, tmp_path):
    """The real app in a gunicorn process (``harness.Web``) on the test's database and Redis.

    Yields a factory: ``live_web(**settings)`` starts it with extra settings; stopped after the test.
    """
    from harness import Web

    started = []

    def start(**settings: str) -> Web:
        web = Web(env, tmp_path / f"web{len(started)}.log", **settings)
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()
