"""Sessions listed and ended by their owner: one revoked is signed out at its next request; a
password change and "sign out everywhere" end the others; nobody reaches anyone else's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import sessions
from accounts.models import UserSession
from accounts.session_store import META_KEY
from audit import actions
from audit.models import AuditLog
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db
LIST = "/api/v1/me/sessions/"


def signed_in(user, agent: str) -> Client:
    client = Client(HTTP_USER_AGENT=agent, REMOTE_ADDR="127.0.0.7")
    response = client.post("/login/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302
    return client


def test_the_owner_lists_their_sessions_and_ends_one():
    user = make_user()
    laptop = signed_in(user, "Firefox on the laptop")
    phone = signed_in(user, "Safari on the phone")
    listed = laptop.get(LIST).json()
    assert {s["user_agent"] for s in listed} == {"Firefox on the laptop", "Safari on the phone"}
    assert [s["current"] for s in listed if s["user_agent"].startswith("Firefox")] == [True]
    assert all(s["ip"] == "127.0.0.7" for s in listed)
    phone_id = next(s["id"] for s in listed if s["user_agent"].startswith("Safari"))
    assert phone.get("/api/v1/me/").status_code == 200

    assert laptop.delete(f"{LIST}{phone_id}/").status_code == 204
    assert phone.get("/api/v1/me/").status_code in (401, 403)
    assert phone.get("/account/").status_code == 302  # to sign in
    assert laptop.get("/api/v1/me/").status_code == 200
    assert [s["user_agent"] for s in laptop.get(LIST).json()] == ["Firefox on the laptop"]
    entry = AuditLog.objects.get(action=actions.USER_SESSION_REVOKE)
    assert entry.changes["session"]["id"] == phone_id
    assert "session_key" not in str(entry.changes)


def test_nobody_ends_or_sees_another_persons_session():
    owner, outsider = make_user(), make_user()
    owners = signed_in(owner, "owner's browser")
    theirs = signed_in(outsider, "outsider's browser")
    owner_session = owners.get(LIST).json()[0]["id"]
    assert [s["user_agent"] for s in theirs.get(LIST).json()] == ["outsider's browser"]
    assert theirs.delete(f"{LIST}{owner_session}/").status_code == 404
    assert owners.get("/api/v1/me/").status_code == 200


def test_the_api_never_shows_a_session_key():
    user = make_user()
    client = signed_in(user, "x")
    key = client.cookies["sessionid"].value
    assert key not in client.get(LIST).content.decode()
    assert client.get(LIST).json()[0]["id"] != key


def test_a_password_change_and_sign_out_everywhere_end_the_others():
    user = make_user()
    here, there = signed_in(user, "here"), signed_in(user, "there")
    changed = here.post(
        "/api/v1/me/password/",
        {"current_password": PASSWORD, "new_password": "a whole new passphrase 9"},
        content_type="application/json",
    )
    assert changed.status_code == 204
    assert there.get("/api/v1/me/").status_code in (401, 403)
    assert [s["user_agent"] for s in here.get(LIST).json()] == ["here"]

    user.set_password(PASSWORD)
    user.save()
    again, other = signed_in(user, "again"), signed_in(user, "other")
    assert again.post("/api/v1/me/sign-out-everywhere/").status_code == 204
    assert other.get("/api/v1/me/").status_code in (401, 403)
    assert [s["user_agent"] for s in again.get(LIST).json()] == ["again"]


def test_signing_out_removes_the_session():
    user = make_user()
    client = signed_in(user, "x")
    assert UserSession.objects.filter(user=user).count() == 1
    client.post("/logout/")
    assert UserSession.objects.filter(user=user).count() == 0


def test_last_seen_is_refreshed_without_a_query_per_request():
    user = make_user()
    client = signed_in(user, "x")
    row = UserSession.objects.get(user=user)
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/v1/me/")
    assert not any("accounts_usersession" in q["sql"] and "UPDATE" in q["sql"]
                   for q in queries.captured_queries)  # fmt: skip

    session = client.session
    old = (timezone.now() - timedelta(seconds=sessions.TOUCH_SECONDS + 5)).isoformat()
    session[META_KEY] = {**session[META_KEY], "seen": old}
    session.save()
    client.get("/api/v1/me/")
    row.refresh_from_db()
    assert timezone.now() - row.last_seen_at < timedelta(seconds=30)
    assert sessions.purge_expired() == 0
    UserSession.objects.filter(pk=row.pk).update(expire_date=timezone.now() - timedelta(1))
    assert sessions.purge_expired() == 1
