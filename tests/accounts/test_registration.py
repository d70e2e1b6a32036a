"""Registration codes (seed 001): staff hand out an 8-character code, valid 30 minutes, one
live code per staff user, used once; a new person signs up with it through the API or the
/register/ page and gets a personal organization they own."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import secrets as creds
from accounts import services
from accounts.models import Membership, RegistrationCode, Role, User
from audit.models import AuditLog
from hostpanel.api.throttling import RegisterThrottle
from tests.conftest import client_for, token_client
from tests.factories import PASSWORD, make_user

CODE_URL = "/api/v1/registration-code/"
REGISTER_URL = "/api/v1/register/"
REGISTER_PAGE = "/register/"

pytestmark = pytest.mark.django_db


def new_code(staff_user: User) -> str:
    resp = client_for(staff_user).post(CODE_URL)
    assert resp.status_code == 201, resp.content
    return resp.data["code"]


def register(code: str, email: str = "new@example.test", password: str = PASSWORD, **extra):
    data = {"code": code, "email": email, "password": password, **extra}
    return APIClient().post(REGISTER_URL, data, format="json")


def expire_codes(**filters) -> None:
    RegistrationCode.objects.filter(**filters).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )


def error_fields(resp) -> dict:
    assert resp.status_code == 400, resp.content
    return resp.json()["fields"]


# --- generating codes --------------------------------------------------------------------


def test_staff_gets_an_eight_character_code_valid_thirty_minutes(staff):
    before = timezone.now()

    resp = client_for(staff).post(CODE_URL)

    assert resp.status_code == 201
    code = resp.data["code"]
    assert re.fullmatch(r"[A-Z0-9]{8}", code)
    reg = RegistrationCode.objects.get(created_by=staff)
    assert reg.code_hash == creds.keyed_hash(code)
    assert before + timedelta(minutes=30) <= reg.valid_until
    assert reg.valid_until <= timezone.now() + timedelta(minutes=30)
    row = AuditLog.objects.get(action="registration_code.create")
    assert row.actor == staff
    assert code not in json.dumps(row.changes) + row.target_label


def test_non_staff_cannot_generate_codes(cast):
    resp = client_for(cast.owner).post(CODE_URL)

    assert resp.status_code == 403
    assert not RegistrationCode.objects.exists()


def test_anonymous_cannot_generate_codes(db):
    assert APIClient().post(CODE_URL).status_code == 401
    assert APIClient().get(CODE_URL).status_code == 401


def test_read_only_token_of_staff_cannot_generate_codes(staff):
    resp = token_client(staff, ["read"]).post(CODE_URL)

    assert resp.status_code == 403
    assert not RegistrationCode.objects.exists()


def test_a_new_code_replaces_the_previous_one(staff):
    first = new_code(staff)
    second = new_code(staff)

    assert RegistrationCode.objects.filter(created_by=staff).count() == 1
    assert "code" in error_fields(register(first))
    assert register(second).status_code == 201


def test_each_staff_user_has_their_own_live_code(staff):
    other_staff = make_user("staff2@example.test", is_staff=True)
    mine = new_code(staff)
    new_code(other_staff)

    assert RegistrationCode.objects.count() == 2
    assert register(mine).status_code == 201


def test_get_shows_validity_but_never_the_code(staff):
    code = new_code(staff)

    resp = client_for(staff).get(CODE_URL)

    assert resp.status_code == 200
    assert "valid_until" in resp.data
    assert "code" not in resp.data
    assert code not in resp.content.decode()


def test_get_without_a_live_code_is_404(staff):
    assert client_for(staff).get(CODE_URL).status_code == 404


# --- registering -------------------------------------------------------------------------


def test_registering_creates_a_user_who_owns_a_personal_organization(staff):
    code = new_code(staff)

    resp = register(code, email="Newbie@Example.test", display_name="New Bie")

    assert resp.status_code == 201, resp.content
    user = User.objects.get(email__iexact="newbie@example.test")
    assert resp.data["id"] == str(user.pk)
    assert "password" not in resp.data
    assert user.check_password(PASSWORD)
    assert not user.is_staff
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.is_personal
    assert resp.data["memberships"] == [
        {
            "organization": membership.organization.slug,
            "organization_name": membership.organization.name,
            "role": "owner",
        }
    ]
    row = AuditLog.objects.get(action="user.register")
    assert row.actor == user
    assert row.changes["code_issued_by"] == "staff@example.test"
    assert row.changes["personal_organization"] == membership.organization.slug
    assert code not in json.dumps(row.changes)
    assert PASSWORD not in json.dumps(row.changes)


def test_a_code_is_used_once(staff):
    code = new_code(staff)
    assert register(code, email="first@example.test").status_code == 201

    resp = register(code, email="second@example.test")

    assert "code" in error_fields(resp)
    assert not User.objects.filter(email="second@example.test").exists()
    assert not RegistrationCode.objects.exists()


def test_code_is_accepted_in_lower_case_and_with_spaces(staff):
    code = new_code(staff)

    assert register(f" {code.lower()} ").status_code == 201


def test_unknown_code_is_refused(staff):
    new_code(staff)

    assert "code" in error_fields(register("ZZZZ9999"))
    assert not User.objects.filter(email="new@example.test").exists()


def test_expired_code_is_refused(staff):
    code = new_code(staff)
    expire_codes(created_by=staff)

    assert "code" in error_fields(register(code))
    assert not User.objects.filter(email="new@example.test").exists()


def test_purge_deletes_only_expired_codes(staff):
    other_staff = make_user("staff2@example.test", is_staff=True)
    new_code(staff)
    live = new_code(other_staff)
    expire_codes(created_by=staff)

    assert services.purge_expired_codes() == 1

    assert list(RegistrationCode.objects.values_list("created_by", flat=True)) == [other_staff.pk]
    assert register(live).status_code == 201


def test_get_purges_expired_codes(staff):
    other_staff = make_user("staff2@example.test", is_staff=True)
    new_code(staff)
    new_code(other_staff)
    expire_codes()

    resp = client_for(staff).get(CODE_URL)

    assert resp.status_code == 404
    assert not RegistrationCode.objects.exists()


@pytest.mark.parametrize("change", [{"is_active": False}, {"is_staff": False}])
def test_code_of_a_deactivated_or_demoted_staff_user_no_longer_works(staff, change):
    code = new_code(staff)
    User.objects.filter(pk=staff.pk).update(**change)

    assert "code" in error_fields(register(code))
    assert not User.objects.filter(email="new@example.test").exists()


@pytest.mark.parametrize("password", ["short1", "12345678901", "password123", "new@example.test"])
def test_weak_password_is_refused_and_the_code_kept(staff, password):
    code = new_code(staff)

    assert "password" in error_fields(register(code, password=password))

    assert not User.objects.filter(email="new@example.test").exists()
    assert register(code).status_code == 201


def test_duplicate_email_in_another_case_is_refused_and_the_code_kept(staff):
    make_user("taken@example.test")
    code = new_code(staff)

    assert "email" in error_fields(register(code, email="TAKEN@Example.test"))

    assert User.objects.filter(email__iexact="taken@example.test").count() == 1
    assert not AuditLog.objects.filter(action="user.register").exists()
    assert register(code, email="fresh@example.test").status_code == 201


def test_register_endpoint_is_throttled(staff):
    throttle = RegisterThrottle()
    allowed, _ = throttle.parse_rate(throttle.get_rate())
    for _ in range(allowed):
        assert register("WRONG000").status_code == 400

    code = new_code(staff)
    resp = register(code)

    assert resp.status_code == 429
    assert resp.json()["code"] == "throttled"
    assert not User.objects.filter(email="new@example.test").exists()


# --- the page ----------------------------------------------------------------------------


def test_register_page_signs_the_new_user_in(staff):
    code = new_code(staff)
    client = Client()
    assert client.get(REGISTER_PAGE).status_code == 200

    resp = client.post(
        REGISTER_PAGE,
        {"code": code, "email": "paged@example.test", "display_name": "Page", "password": PASSWORD},
    )

    assert resp.status_code == 302
    assert resp["Location"] == "/"
    user = User.objects.get(email="paged@example.test")
    assert client.session[SESSION_KEY] == str(user.pk)
    assert client.get("/").status_code == 200
    assert Membership.objects.get(user=user).role == Role.OWNER
    assert not RegistrationCode.objects.exists()


def test_register_page_shows_errors_for_a_bad_code(staff):
    new_code(staff)
    client = Client()

    resp = client.post(
        REGISTER_PAGE, {"code": "ZZZZ9999", "email": "paged@example.test", "password": PASSWORD}
    )

    assert resp.status_code == 200
    assert "invalid or has expired" in resp.content.decode()
    assert SESSION_KEY not in client.session
    assert not User.objects.filter(email="paged@example.test").exists()
