"""Session sign-in and sign-out, their audit trail, login throttling, password hashing
(Argon2, imported bcrypt hashes), API throttles and /api/v1/me/."""

from __future__ import annotations

import json
from datetime import timedelta

import bcrypt
import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.hashers import check_password
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.hashers import import_bcrypt_hash
from accounts.login_throttle import IP_FACTOR
from accounts.models import User
from audit.models import AuditLog
from hostpanel import settings as production_settings
from hostpanel.api.throttling import AnonThrottle, TokenThrottle
from tests.conftest import client_for, token_client
from tests.factories import PASSWORD, make_user

LOGIN = "/login/"
LOGOUT = "/logout/"
ME = "/api/v1/me/"
WRONG = "not the password at all 99"
BLOCKED = "Too many failed sign-ins"

pytestmark = pytest.mark.django_db


def sign_in(email: str, password: str, client: Client | None = None, **extra):
    client = client or Client()
    return client, client.post(LOGIN, {"username": email, "password": password}, **extra)


def signed_in_as(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


@pytest.fixture
def production_hashers(settings):
    """Undo the autouse fast-hasher fixture: the hasher list settings.py ships with."""
    settings.PASSWORD_HASHERS = list(production_settings.PASSWORD_HASHERS)
    return settings.PASSWORD_HASHERS


def limit_rate(monkeypatch, throttle, rate: str) -> None:
    """Lower one throttle's rate for a test.

    Overriding settings.REST_FRAMEWORK does not reach DRF's throttles reliably: they copy
    DEFAULT_THROTTLE_RATES into a class attribute when first imported. A class-level `rate`
    is read by every new throttle instance, so setting it works whatever ran before.
    """
    monkeypatch.setattr(throttle, "rate", rate, raising=False)


def set_legacy_hash(user: User, password: bytes) -> None:
    """Give the user a bcrypt hash the way the seed importer does (bcrypt < 5 truncated)."""
    raw = bcrypt.hashpw(password[:72], bcrypt.gensalt(rounds=4)).decode()
    User.objects.filter(pk=user.pk).update(password=import_bcrypt_hash(raw))
    user.refresh_from_db()


# --- session sign-in ---------------------------------------------------------------------


def test_login_page_renders_the_form(db):
    resp = Client().get(LOGIN)

    assert resp.status_code == 200
    assert b'name="username"' in resp.content
    assert b'name="password"' in resp.content


def test_login_with_email_and_password_redirects_and_is_audited(cast):
    client, resp = sign_in("owner@example.test", PASSWORD)

    assert resp.status_code == 302
    assert resp["Location"] == "/"
    assert signed_in_as(client) == str(cast.owner.pk)
    assert client.get("/").status_code == 200
    row = AuditLog.objects.get(action="user.login")
    assert row.actor == cast.owner
    assert row.target_id == str(cast.owner.pk)
    assert row.ip == "127.0.0.1"


def test_login_email_is_case_insensitive(cast):
    client, resp = sign_in("OWNER@Example.TEST", PASSWORD)

    assert resp.status_code == 302
    assert signed_in_as(client) == str(cast.owner.pk)


def test_wrong_password_is_refused_and_audited_without_the_password(cast):
    client, resp = sign_in("Owner@Example.test", WRONG)

    assert resp.status_code == 200
    assert signed_in_as(client) is None
    row = AuditLog.objects.get(action="user.login_failed")
    assert row.target_label == "owner@example.test"
    assert row.target_id == str(cast.owner.pk)
    assert row.actor is None
    for field in AuditLog._meta.concrete_fields:
        assert WRONG not in str(getattr(row, field.attname)), field.name
    assert not AuditLog.objects.filter(action="user.login").exists()


def test_unknown_email_is_audited_with_the_attempted_address(db):
    sign_in("Nobody@Example.test", WRONG)

    row = AuditLog.objects.get(action="user.login_failed")
    assert row.target_label == "nobody@example.test"
    assert row.target_id == ""
    for field in AuditLog._meta.concrete_fields:
        assert WRONG not in str(getattr(row, field.attname)), field.name


def test_logout_is_a_post_and_is_audited(cast):
    client, _ = sign_in("member@example.test", PASSWORD)

    resp = client.post(LOGOUT)

    assert resp.status_code == 302
    assert signed_in_as(client) is None
    row = AuditLog.objects.get(action="user.logout")
    assert row.actor == cast.member
    assert client.get("/").status_code == 302  # back to the login page


# --- login throttling --------------------------------------------------------------------


def test_after_the_failure_limit_even_the_right_password_is_refused(cast, settings):
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        # Case does not help an attacker: every spelling counts against the same account.
        sign_in("owner@example.test" if n % 2 else "OWNER@example.test", WRONG)

    client, resp = sign_in("owner@example.test", PASSWORD)

    assert resp.status_code == 200
    assert BLOCKED in resp.content.decode()
    assert signed_in_as(client) is None
    assert not AuditLog.objects.filter(action="user.login").exists()


def test_one_failure_below_the_limit_still_signs_in(cast, settings):
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        sign_in("owner@example.test", WRONG)

    client, resp = sign_in("owner@example.test", PASSWORD)

    assert resp.status_code == 302
    assert signed_in_as(client) == str(cast.owner.pk)


def test_failures_for_other_emails_do_not_block_this_one(cast, settings):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        sign_in("viewer@example.test", WRONG)
        sign_in("nobody@example.test", WRONG)
    _, blocked = sign_in("viewer@example.test", PASSWORD)
    assert BLOCKED in blocked.content.decode()

    client, resp = sign_in("owner@example.test", PASSWORD)

    assert resp.status_code == 302
    assert signed_in_as(client) == str(cast.owner.pk)


def test_failures_older_than_the_window_do_not_count(cast, settings):
    old = timezone.now() - settings.LOGIN_FAILURE_WINDOW - timedelta(minutes=1)
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        AuditLog.objects.create(
            action="user.login_failed", timestamp=old, target_label="owner@example.test"
        )

    client, resp = sign_in("owner@example.test", PASSWORD)

    assert resp.status_code == 302
    assert signed_in_as(client) == str(cast.owner.pk)


def test_many_failures_from_one_ip_block_that_ip_only(cast, settings):
    for n in range(settings.LOGIN_FAILURE_LIMIT * IP_FACTOR):
        sign_in(f"spray{n}@example.test", WRONG, REMOTE_ADDR="192.0.2.66")

    _, blocked = sign_in("owner@example.test", PASSWORD, REMOTE_ADDR="192.0.2.66")
    client, resp = sign_in("owner@example.test", PASSWORD, REMOTE_ADDR="192.0.2.67")

    assert BLOCKED in blocked.content.decode()
    assert resp.status_code == 302
    assert signed_in_as(client) == str(cast.owner.pk)


# --- password hashing --------------------------------------------------------------------


def test_passwords_are_hashed_with_argon2(production_hashers):
    assert production_hashers[0].endswith("Argon2PasswordHasher")

    user = make_user("argon@example.test")

    assert user.password.startswith("argon2$argon2id$")
    assert PASSWORD not in user.password
    assert check_password(PASSWORD, user.password)


def test_imported_bcrypt_hash_verifies_signs_in_and_is_upgraded(production_hashers):
    user = make_user("legacy@example.test")
    set_legacy_hash(user, b"secret-pass-1")
    assert user.password.startswith("bcrypt$$2b$04$")
    assert check_password("secret-pass-1", user.password)
    assert not check_password("secret-pass-2", user.password)

    client, resp = sign_in("legacy@example.test", "secret-pass-1")

    assert resp.status_code == 302
    assert signed_in_as(client) == str(user.pk)
    user.refresh_from_db()
    assert user.password.startswith("argon2$")
    assert check_password("secret-pass-1", user.password)


def test_import_bcrypt_hash_refuses_other_formats():
    with pytest.raises(ValueError):
        import_bcrypt_hash("pbkdf2_sha256$1000$salt$hash")


def test_long_password_against_a_bcrypt_hash_does_not_crash(production_hashers):
    long_password = "long-" * 20  # 100 bytes, past bcrypt's 72
    user = make_user("long@example.test")
    set_legacy_hash(user, long_password.encode())

    assert check_password(long_password, user.password)
    assert not check_password("x" * 100, user.password)
    _, wrong = sign_in("long@example.test", "x" * 100)
    assert wrong.status_code == 200
    client, resp = sign_in("long@example.test", long_password)
    assert resp.status_code == 302
    assert signed_in_as(client) == str(user.pk)


def test_bcrypt_truncation_at_72_bytes_inside_a_multibyte_character(production_hashers):
    # The seed systems hashed the first 72 *bytes*; here byte 72 is the first half of "é".
    password = "a" * 71 + "été trop long"
    user = make_user("accent@example.test")
    set_legacy_hash(user, password.encode())

    assert check_password(password, user.password)


# --- API throttles -----------------------------------------------------------------------


def test_anonymous_api_calls_are_throttled_with_a_json_429(db, monkeypatch):
    limit_rate(monkeypatch, AnonThrottle, "2/min")
    client = APIClient()
    url = "/api/v1/schema/?format=json"

    assert [client.get(url).status_code for _ in range(2)] == [200, 200]
    resp = client.get(url)

    assert resp.status_code == 429
    assert (
        "json" in resp["Content-Type"]
    )  # the schema view answers application/vnd.oai.openapi+json
    body = json.loads(resp.content)
    assert body["code"] == "throttled"
    assert "throttled" in body["detail"].lower()
    assert int(resp["Retry-After"]) > 0


def test_token_calls_are_throttled_per_token(cast, monkeypatch):
    limit_rate(monkeypatch, TokenThrottle, "3/min")
    first = token_client(cast.member, ["read"])
    second = token_client(cast.member, ["read"])

    assert [first.get(ME).status_code for _ in range(3)] == [200] * 3
    resp = first.get(ME)

    assert resp.status_code == 429
    assert resp.json()["code"] == "throttled"
    assert second.get(ME).status_code == 200  # another token of the same user has its own budget
    assert client_for(cast.member).get(ME).status_code == 200  # sessions are counted apart


# --- /api/v1/me/ -------------------------------------------------------------------------


def test_me_needs_authentication(db):
    resp = APIClient().get(ME)

    assert resp.status_code == 401
    assert resp["WWW-Authenticate"] == "Bearer"


def test_me_shows_the_user_and_their_memberships(cast):
    resp = client_for(cast.admin).get(ME)

    assert resp.status_code == 200
    assert resp.data["email"] == "admin@example.test"
    roles = {m["organization"]: m["role"] for m in resp.data["memberships"]}
    assert roles["acme"] == "admin"
    assert "globex" not in roles
    assert "password" not in resp.data


def test_display_name_change_is_audited(cast):
    resp = client_for(cast.member).patch(ME, {"display_name": "Mia Member"}, format="json")

    assert resp.status_code == 200
    cast.member.refresh_from_db()
    assert cast.member.display_name == "Mia Member"
    row = AuditLog.objects.get(action="user.update")
    assert row.actor == cast.member
    assert row.changes == {"before": {"display_name": ""}, "after": {"display_name": "Mia Member"}}


def test_email_cannot_be_changed_through_me(cast):
    resp = client_for(cast.member).patch(ME, {"email": "hijack@example.test"}, format="json")

    assert resp.status_code in (200, 400)
    cast.member.refresh_from_db()
    assert cast.member.email == "member@example.test"
    assert not AuditLog.objects.filter(action="user.update").exists()
