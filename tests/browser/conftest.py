"""Headless Chromium (Debian's, driven by Playwright) against the panel on pytest-django's
live server. Every page a test opens is watched for script errors and failed requests to the
panel; a test fails on any. A failed test leaves screenshots of its pages in
var/browser-failures/."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Chromium's own calls home are refused by this machine's closed network: keep it quiet.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between page steps are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
FAILURES = Path(__file__).resolve().parents[2] / "var" / "browser-failures"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.browser_failed = report.failed


@pytest.fixture(scope="session")
def chromium():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


class Watched:
    """A page, and what went wrong on it (script errors, console errors, 5xx answers)."""

    def __init__(self, page):
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" and "status of 4" not in m.text
                else None
            ),
        )
        page.on(
            "response",
            lambda r: self.problems.append(f"{r.status} from {r.url}") if r.status >= 500 else None,
        )


@pytest.fixture
def browse(request, chromium, live_server, settings, transactional_db):
    """browse(user=None, width=1200) -> a Watched page of a fresh browser context, signed in
    as `user` (the session cookie of a real sign-in) when given."""
    settings.SITE_URL = live_server.url
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
    contexts, watched = [], []

    def open_page(user=None, width: int = 1200):
        context = chromium.new_context(
            base_url=live_server.url, viewport={"width": width, "height": 900}
        )
        context.set_default_timeout(10_000)
        if user is not None:
            client = Client()
            client.force_login(user)
            cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
            context.add_cookies(
                [{"name": cookie.key, "value": cookie.value, "url": live_server.url}]
            )
        contexts.append(context)
        page = Watched(context.new_page())
        watched.append(page)
        return page

    yield open_page
    if getattr(request.node, "browser_failed", False):
        FAILURES.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        for n, w in enumerate(watched):
            with contextlib.suppress(Exception):
                w.page.screenshot(path=str(FAILURES / f"{name}-{n}.png"), full_page=True)
    for context in contexts:
        context.close()
    problems = [p for w in watched for p in w.problems]
    assert not problems, "\n".join(problems)
