"""The shared cast: an organization with owner, admin, member and viewer, another
organization with its own owner, and an outsider who belongs to neither."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
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
