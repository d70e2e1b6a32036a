"""Platform statistics (seed 001 §4.3): the counts, a fixed number of queries, staff only."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from hosting import services
from hosting.models import Container, Site
from monitoring.stats import platform_stats
from tests.api_mixin import assert_error
from tests.conftest import client_for, token_client
from tests.factories import make_org, make_user
from tests.hosting.factories import ensure_host, make_domain, make_site

STATS = "/api/v1/stats/"
EXPECTED = {
    "users": {"total": 3, "active": 2},
    "organizations": 4,  # a personal one per user, and Acme
    "sites": {"total": 2, "running": 1},
    "domains": 2,
    "hosts": {"total": 2, "online": 1},
    "containers": 1,
    "other_containers": 2,  # e.g. a build's intermediate container: no site's
}


@pytest.fixture
def platform(staff):
    """Three users (one inactive), three sites (one running, one deleted with its domain),
    two hosts (one offline), three containers."""
    alice = make_user("alice@example.test")
    bob = make_user("bob@example.test")
    User.objects.filter(pk=bob.pk).update(is_active=False)
    org = make_org(alice, "Acme", slug="acme")
    host = ensure_host()
    down = services.create_host(actor=None, name="down", endpoint="unix:///nonexistent.sock")
    services.mark_host_offline(down, "engine gone")
    running, idle, gone = (make_site(org, name=n) for n in ("Running", "Idle", "Gone"))
    Site.objects.filter(pk=running.pk).update(observed_state="running")  # as sync would
    make_domain(running, "www.example.com")
    make_domain(idle, "idle.example.com")
    make_domain(gone, "gone.example.com")
    services.delete_site(gone, actor=None)
    for n in range(3):
        Container.objects.create(
            host=host,
            site=running if n == 0 else None,
            docker_id=f"c{n}",
            name=f"c{n}",
            image="x",
            state="running",
        )


def test_counts(platform):
    assert platform_stats() == EXPECTED


def test_empty_platform(db):
    assert platform_stats() == {
        "users": {"total": 0, "active": 0},
        "organizations": 0,
        "sites": {"total": 0, "running": 0},
        "domains": 0,
        "hosts": {"total": 0, "online": 0},
        "containers": 0,
        "other_containers": 0,
    }


def test_query_count_is_fixed(platform):
    with CaptureQueriesContext(connection) as before:
        platform_stats()
    org = make_org(make_user("carol@example.test"), "More")
    for n in range(5):
        make_site(org, name=f"More {n}")
    with CaptureQueriesContext(connection) as after:
        stats = platform_stats()
    assert stats["sites"]["total"] == 7
    assert len(before) == len(after) <= 6


def test_staff_read_the_stats(platform, staff):
    response = client_for(staff).get(STATS)
    assert response.status_code == 200, response.content
    assert response.json() == EXPECTED


def test_staff_token_with_read_scope_works(platform, staff):
    assert token_client(staff, ("read",)).get(STATS).json() == EXPECTED
    assert_error(token_client(staff, ("deploy",)).get(STATS), 403, "permission_denied")


def test_non_staff_get_403(platform):
    alice = User.objects.get(email="alice@example.test")
    assert_error(client_for(alice).get(STATS), 403, "permission_denied")
    assert_error(token_client(alice, ("read",)).get(STATS), 403, "permission_denied")


def test_anonymous_gets_401(db):
    assert_error(APIClient().get(STATS), 401, "not_authenticated")
