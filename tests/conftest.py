"""The shared cast: an organization with owner, admin, member and viewer, another
organization with its own owner, and an outsider who belongs to neither."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Organization, Role, User
from tests.factories import add_member, make_org, make_token, make_user


@dataclass
class Cast:
    org: Organization
    other_org: Organization
    owner: User
    admin: User
    member: User
    viewer: User
    other_owner: User
    outsider: User


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Argon2 is slow on purpose; tests that check hashing itself override this."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()  # throttle counters must not leak between tests
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _audit_rows_leave_by_the_purge_gate(request):
    """A transactional test ends with Django's flush, whose DELETEs the audit table's
    trigger refuses on SQLite (PostgreSQL's TRUNCATE fires no row trigger): the rows are
    removed first, through the retention purge's gate."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and marker.kwargs.get("transaction")
    )
    if not transactional:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # torn down (flushed) after this fixture
    yield
    from django.db import connection, transaction

    from audit.models import AuditChain

    if connection.vendor == "sqlite":
        with transaction.atomic(), connection.cursor() as cursor:
            AuditChain.objects.update_or_create(pk=1, defaults={"purging": True})
            cursor.execute("DELETE FROM audit_auditlog")


@pytest.fixture
def cast(db) -> Cast:
    owner = make_user("owner@example.test", display_name="Olive Owner")
    admin = make_user("admin@example.test")
    member = make_user("member@example.test")
    viewer = make_user("viewer@example.test")
    other_owner = make_user("other@example.test")
    outsider = make_user("outsider@example.test")
    org = make_org(owner, "Acme", slug="acme")
    add_member(org, admin, Role.ADMIN)
    add_member(org, member, Role.MEMBER)
    add_member(org, viewer, Role.VIEWER)
    other_org = make_org(other_owner, "Globex", slug="globex")
    return Cast(org, other_org, owner, admin, member, viewer, other_owner, outsider)


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def token_client(user: User, scopes=("read", "write"), **extra) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(user, scopes, **extra)}")
    return client


@pytest.fixture
def as_user():
    """as_user(user) -> an APIClient signed in with a session, like a page would be."""
    return client_for


@pytest.fixture(autouse=True)
def sent_tasks(monkeypatch) -> list[tuple]:
    """Tasks hosting code hands to Celery (hosting.queue.send, the one seam), recorded
    instead of sent: no message reaches a broker unless a test sends it itself."""
    from hosting import queue

    sent: list[tuple] = []
    monkeypatch.setattr(queue, "send", lambda task, *args, **kw: sent.append((task, *args)))
    return sent


def route_task(monkeypatch, task: str, handler) -> None:
    """Send `task` (by name, through hosting.queue.send) to `handler(*args)` instead; other
    tasks go where they went before."""
    from hosting import queue

    previous = queue.send

    def send(name, *args, **options):
        if name == task:
            handler(*args)
        else:
            previous(name, *args, **options)

    monkeypatch.setattr(queue, "send", send)


@pytest.fixture
def run_sent_tasks(sent_tasks):
    """run_sent_tasks() runs what was sent so far, in this process, as a worker would."""
    from hosting import tasks

    def run() -> int:
        done = 0
        while sent_tasks:
            task, *args = sent_tasks.pop(0)
            getattr(tasks, task).run(*args)
            done += 1
        return done

    return run


@pytest.fixture
def staff(db) -> User:
    """A platform operator (staff and superuser)."""
    return make_user("staff@example.test", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(staff) -> Client:
    """A browser signed in to the admin as `staff`."""
    client = Client()
    client.force_login(staff)
    return client


# --- the browser (tests/browser/, and integration tests that drive pages) ---------------------
# Headless Chromium (Debian's, driven by Playwright) against the panel on pytest-django's live
# server. Every page a test opens is watched for script errors (a Content-Security-Policy
# violation included) and 5xx answers; a test fails on any. A failed test leaves screenshots
# of its pages in var/browser-failures/. Defined here, once: a second session of the sync
# Playwright API in the same thread is refused.

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
FAILURES = Path(__file__).resolve().parents[1] / "var" / "browser-failures"


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
    """browse(user=None, width=1200, bypass_csp=False) -> a Watched page of a fresh browser
    context, signed in as `user` (the session cookie of a real sign-in) when given."""
    settings.SITE_URL = live_server.url
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
    contexts, watched = [], []

    def open_page(user=None, width: int = 1200, bypass_csp: bool = False):
        context = chromium.new_context(
            base_url=live_server.url,
            viewport={"width": width, "height": 900},
            bypass_csp=bypass_csp,  # only to inject a checker (axe-core) into the page
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
