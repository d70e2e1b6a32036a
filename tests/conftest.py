"""The shared cast: an organization with owner, admin, member and viewer, another
organization with its own owner, and an outsider who belongs to neither."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.core.cache import cache
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
