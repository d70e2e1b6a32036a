"""Inputs that used to escape as 500s or non-JSON errors: each is a 400 with a message."""

from __future__ import annotations

import pytest

from accounts.models import Membership
from tests.api_mixin import assert_error, assert_field_errors
from tests.conftest import client_for
from tests.hosting.factories import ensure_host, site_url, sites_url, the_site


def test_patch_member_without_role_is_400_naming_role(cast):
    membership = Membership.objects.get(organization=cast.org, user=cast.member)
    response = client_for(cast.owner).patch(
        f"/api/v1/organizations/acme/members/{membership.pk}/", {}, format="json"
    )
    fields = assert_field_errors(response, "role")
    assert fields["role"] == ["This field is required."]


@pytest.mark.parametrize("path", ["/api/v1/register/", "/api/v1/organizations/"])
def test_json_nested_deeper_than_python_can_parse_is_400(cast, path):
    body = "[" * 5000 + "]" * 5000
    response = client_for(cast.owner).generic("POST", path, body, content_type="application/json")
    body = assert_error(response, 400)
    assert "nested too deeply" in body["detail"]


def test_oversized_body_is_a_json_400_under_the_api(cast, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client_for(cast.owner).generic(
        "POST",
        "/api/v1/organizations/",
        '{"name": "' + "x" * 5000 + '"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "bad_request"


def test_nested_field_errors_are_nested_json_not_python_reprs(cast):
    ensure_host()
    response = client_for(cast.member).post(
        sites_url(cast.org),
        {
            "name": "Blog",
            "site_type": "docker",
            "image": "example/app:1",
            "desired_state": "stopped",
            "limits": {"memory_mb": 1},
        },
        format="json",
    )
    fields = assert_field_errors(response, "limits")
    assert isinstance(fields["limits"], dict)
    assert "memory_mb" in fields["limits"]
    assert "ErrorDetail" not in response.content.decode()


@pytest.mark.parametrize(
    ("field", "too_big"),
    [("disk_mb", 2**40), ("bandwidth_mb", 2**40), ("requests_per_minute", 2**40)],
)
def test_limits_have_the_same_upper_bound_on_every_database(cast, field, too_big):
    the_site(cast.org)
    response = client_for(cast.admin).patch(
        site_url(cast.org, part="limits"), {field: too_big}, format="json"
    )
    assert_field_errors(response, field)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("database or disk is full", "storage_full"),
        ("disk I/O error", "storage_full"),
        ("terminating connection due to administrator command", "database_unavailable"),
    ],
)
def test_the_database_failing_is_a_503_with_a_message_not_a_500(cast, monkeypatch, error, code):
    from django.db import OperationalError

    from accounts.api import views

    def fail(self, request):
        raise OperationalError(error)

    monkeypatch.setattr(views.MeView, "get", fail)
    response = client_for(cast.owner).get("/api/v1/me/")
    body = assert_error(response, 503)
    assert body["code"] == code and "nothing was saved" in body["detail"]
    assert response["Retry-After"] == "5"


def test_the_database_failing_outside_a_view_is_a_503_page(cast, monkeypatch):
    """A failure Django meets outside the view (the session saved after it) reaches
    handler500, which tells it apart too: a page for pages, JSON under /api/."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import OperationalError
    from django.test import Client

    from accounts.session_store import META_KEY

    def fail(self, must_create=False):
        raise OperationalError("database or disk is full")

    client = Client(raise_request_exception=False)
    client.force_login(cast.owner)
    for path, kind in (("/account/", "text/html"), ("/api/v1/me/", "application/json")):
        session = client.session
        session[META_KEY] = {**session[META_KEY], "seen": "2000-01-01T00:00:00+00:00"}
        session.save()  # stale: the next request refreshes it, saving the session
        with monkeypatch.context() as patch:
            patch.setattr(SessionStore, "save", fail)
            response = client.get(path)
        assert response.status_code == 503, (path, response.content[:300])
        assert response["Content-Type"].startswith(kind)
        assert b"cannot write to its disk" in response.content
