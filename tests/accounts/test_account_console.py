"""What the console needs of accounts: password change (never through PATCH /me/), sign out
everywhere, password reset by email, and joining with an invitation alone."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from accounts import services
from accounts.models import Membership, Role, User
from audit.models import AuditLog
from tests.conftest import client_for, token_client
from tests.factories import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple 42"


def signed_in(user, password=PASSWORD) -> Client:
    client = Client()
    assert client.login(username=user.email, password=password)
    return client


def test_patch_me_refuses_a_password_instead_of_ignoring_it(cast):
    response = client_for(cast.member).patch("/api/v1/me/", {"password": "x"}, format="json")
    assert (
        response.status_code == 400 and "me/password/" in response.json()["fields"]["password"][0]
    )


def test_password_change_needs_the_current_one_and_ends_the_other_sessions():
    user = make_user("pw@example.test", password=PASSWORD)
    here, elsewhere = signed_in(user), signed_in(user)
    wrong = here.post(
        "/api/v1/me/password/",
        {"current_password": "nope", "new_password": "another good one 77"},
        content_type="application/json",
    )
    assert wrong.status_code == 400 and "current_password" in wrong.json()["fields"]
    weak = here.post(
        "/api/v1/me/password/",
        {"current_password": PASSWORD, "new_password": "123"},
        content_type="application/json",
    )
    assert weak.status_code == 400 and "new_password" in weak.json()["fields"]
    done = here.post(
        "/api/v1/me/password/",
        {"current_password": PASSWORD, "new_password": "another good one 77"},
        content_type="application/json",
    )
    assert done.status_code == 204
    assert here.get("/api/v1/me/").status_code == 200  # this session stays
    assert elsewhere.get("/api/v1/me/").status_code in (401, 403)  # the other one ended
    user.refresh_from_db()
    assert user.check_password("another good one 77")
    assert AuditLog.objects.filter(action="user.password_change", target_id=str(user.pk)).exists()
    changes = AuditLog.objects.get(action="user.password_change").changes
    assert "another good one" not in str(changes)


def test_sign_out_everywhere_keeps_this_session_only(cast):
    user = make_user("many@example.test", password=PASSWORD)
    here, elsewhere = signed_in(user), signed_in(user)
    assert here.post("/api/v1/me/sign-out-everywhere/").status_code == 204
    assert here.get("/api/v1/me/").status_code == 200
    assert elsewhere.get("/api/v1/me/").status_code in (401, 403)
    assert signed_in(user).get("/api/v1/me/").status_code == 200  # signing in again works
    assert AuditLog.objects.filter(action="user.sign_out_everywhere").count() == 1


def test_tokens_cannot_change_passwords_or_end_sessions(cast):
    client = token_client(cast.member, scopes=("read", "write"))
    for url in ("/api/v1/me/password/", "/api/v1/me/sign-out-everywhere/"):
        response = client.post(url, {}, format="json")
        assert response.status_code == 403 and "session" in response.json()["detail"], url


def test_password_reset_by_email_sets_a_new_password_once(settings):
    settings.SITE_URL = "http://127.0.0.1:8123"
    user = make_user("reset@example.test", password=PASSWORD)
    client = Client()
    assert client.post("/password-reset/", {"email": "reset@example.test"}).status_code == 302
    assert client.post("/password-reset/", {"email": "nobody@example.test"}).status_code == 302
    assert len(mail.outbox) == 1  # the same answer either way; mail only for the account
    link = re.search(r"http://127\.0\.0\.1:8123(/password-reset/\S+/\S+/)", mail.outbox[0].body)[1]
    form = client.get(link, follow=True)
    assert form.status_code == 200 and b"Set a new password" in form.content
    set_url = form.redirect_chain[-1][0]
    done = client.post(
        set_url, {"new_password1": "fresh pass 2026!", "new_password2": "fresh pass 2026!"}
    )
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    user.refresh_from_db()
    assert user.check_password("fresh pass 2026!")
    assert AuditLog.objects.filter(action="user.password_reset", target_id=str(user.pk)).exists()
    again = Client().get(link, follow=True)
    assert b"This link cannot be used" in again.content


def test_an_invitation_alone_creates_the_account_and_joins(
    cast, client, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "http://127.0.0.1:8123"
    with django_capture_on_commit_callbacks(execute=True):
        _, code = services.invite(
            cast.org, email="New.Person@example.test", role=Role.MEMBER, actor=cast.owner
        )
    link = f"http://127.0.0.1:8123/invitations/{code}/"
    assert link in mail.outbox[-1].body  # a page (GET), on the panel's own address
    page = client.get(f"/invitations/{code}/")
    assert page.status_code == 200 and b"Join Acme" in page.content
    assert b"Create account and join" in page.content

    made = client.post(
        f"/api/v1/invitations/{code}/register/",
        {"password": PASSWORD, "display_name": "Newt"},
        content_type="application/json",
    )
    assert made.status_code == 201, made.content
    user = User.objects.get(email__iexact="new.person@example.test")
    assert Membership.objects.filter(user=user, organization=cast.org, role="member").exists()
    assert client.get("/api/v1/me/").json()["email"] == user.email  # signed in
    assert client.get(f"/invitations/{code}/").status_code == 404  # used
    again = Client().post(
        f"/api/v1/invitations/{code}/register/",
        {"password": PASSWORD},
        content_type="application/json",
    )
    assert again.status_code == 400


def test_an_invitation_for_an_existing_account_asks_to_sign_in(cast, client):
    _, code = services.invite(
        cast.org, email=cast.outsider.email, role=Role.VIEWER, actor=cast.owner
    )
    refused = client.post(
        f"/api/v1/invitations/{code}/register/",
        {"password": PASSWORD},
        content_type="application/json",
    )
    assert refused.status_code == 400 and "sign in" in refused.json()["detail"]
    assert client.get("/invitations/not-a-code/").status_code == 404
    page = client_for(cast.other_owner).get(f"/invitations/{code}/")
    assert b"this invitation is for outsider@example.test" in page.content
    assert b"Accept and join" in client_for(cast.outsider).get(f"/invitations/{code}/").content
