"""Two-factor sign-in: enrolment through the API, the second step of the sign-in page, recovery
codes, replay, the failure limit, tokens needing a code, and staff required to have it."""

from __future__ import annotations

import time

import pyotp
import pytest
from django.test import Client

from accounts import two_factor
from accounts.forms import BLOCKED_MESSAGE
from accounts.models import RecoveryCode, TwoFactorDevice, UserSession
from audit import actions
from audit.models import AuditLog
from tests.conftest import client_for
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db
ME = "/api/v1/me/two-factor/"


def enrol(user) -> tuple[pyotp.TOTP, list[str]]:
    client = client_for(user)
    secret = client.post(ME, {"password": PASSWORD}, format="json").json()["secret"]
    totp = pyotp.TOTP(secret)
    codes = client.post(f"{ME}confirm/", {"code": totp.now()}, format="json").json()
    return totp, codes["recovery_codes"]


def next_code(totp: pyotp.TOTP) -> str:
    """A code of the next step (codes are good once; the drift window accepts it)."""
    return totp.at(time.time() + 30)


def password_step(client: Client, user, next_url: str = "/account/"):
    return client.post(
        f"/login/?next={next_url}",
        {"username": user.email, "password": PASSWORD, "next": next_url},
    )


def test_enrolment_needs_the_password_and_a_first_code():
    user = make_user()
    client = client_for(user)
    assert client.get(ME).json() == {
        "enabled": False, "pending": False, "required": False, "confirmed_at": None,
        "recovery_codes_left": 0,
    }  # fmt: skip
    wrong = client.post(ME, {"password": "nope"}, format="json")
    assert wrong.status_code == 400 and "password" in wrong.json()["fields"]

    made = client.post(ME, {"password": PASSWORD}, format="json")
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert made.json()["otpauth_uri"].startswith("otpauth://totp/hostpanel:")
    assert secret not in TwoFactorDevice.objects.get(user=user).secret_encrypted
    assert client.get(ME).json()["pending"] is True
    assert not two_factor.is_enabled(user)

    bad = client.post(f"{ME}confirm/", {"code": "000000"}, format="json")
    assert bad.status_code == 400 and "code" in bad.json()["fields"]
    confirmed = client.post(f"{ME}confirm/", {"code": pyotp.TOTP(secret).now()}, format="json")
    assert confirmed.status_code == 200
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    state = client.get(ME).json()
    assert state["enabled"] is True and state["recovery_codes_left"] == 10
    assert AuditLog.objects.filter(action=actions.TWO_FACTOR_ENABLE, target_id=str(user.pk))
    again = client.post(ME, {"password": PASSWORD}, format="json")
    assert again.status_code == 400  # on already: turn it off first


def test_sign_in_asks_for_the_code_then_lets_in_once():
    user = make_user()
    totp, _ = enrol(user)
    client = Client()
    first = password_step(client, user)
    assert first.status_code == 302 and first["Location"] == "/login/second-factor/"
    assert "_auth_user_id" not in client.session
    assert client.get("/account/").status_code == 302  # not signed in yet

    wrong = client.post("/login/second-factor/", {"code": "123456"})
    assert wrong.status_code == 400 and "does not match" in wrong.content.decode()
    assert AuditLog.objects.filter(action=actions.USER_LOGIN_FAILED, target_label=user.email)

    code = next_code(totp)
    done = client.post("/login/second-factor/", {"code": code})
    assert done.status_code == 302 and done["Location"] == "/account/"
    assert client.session["_auth_user_id"] == str(user.pk)
    assert UserSession.objects.get(user=user, second_factor="totp")
    logins = AuditLog.objects.filter(action=actions.USER_LOGIN, target_id=str(user.pk))
    login = logins.order_by("-timestamp").first()
    assert login.changes == {"second_factor": "totp"}

    # The same code a second time (seen over a shoulder) is spent.
    other = Client()
    password_step(other, user)
    replay = other.post("/login/second-factor/", {"code": code})
    assert replay.status_code == 400 and "_auth_user_id" not in other.session


def test_a_recovery_code_works_once():
    user = make_user()
    _, codes = enrol(user)
    client = Client()
    password_step(client, user)
    used = client.post("/login/second-factor/", {"code": codes[0].upper()})
    assert used.status_code == 302 and client.session["_auth_user_id"] == str(user.pk)
    assert two_factor.recovery_codes_left(user) == 9
    assert AuditLog.objects.filter(action=actions.RECOVERY_CODE_USE, target_id=str(user.pk))

    other = Client()
    password_step(other, user)
    assert other.post("/login/second-factor/", {"code": codes[0]}).status_code == 400


def test_the_second_step_expires(monkeypatch):
    user = make_user()
    totp, _ = enrol(user)
    client = Client()
    password_step(client, user)
    later = time.time() + 301
    monkeypatch.setattr(time, "time", lambda: later)
    response = client.post("/login/second-factor/", {"code": totp.at(later)})
    assert response.status_code == 302 and response["Location"] == "/login/?expired=1"
    assert "_auth_user_id" not in client.session


def test_wrong_codes_count_toward_the_sign_in_limit(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    user = make_user()
    totp, _ = enrol(user)
    client = Client()
    password_step(client, user)
    for _ in range(3):
        assert client.post("/login/second-factor/", {"code": "111111"}).status_code == 400
    blocked = client.post("/login/second-factor/", {"code": next_code(totp)})
    assert blocked.status_code == 429 and BLOCKED_MESSAGE in blocked.content.decode()
    assert "_auth_user_id" not in client.session


def test_without_two_factor_the_password_is_enough():
    user = make_user()
    client = Client()
    response = password_step(client, user)
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_token_needs_a_code_when_two_factor_is_on():
    user = make_user()
    totp, codes = enrol(user)
    client = client_for(user)
    body = {"name": "ci", "scopes": ["read"]}
    refused = client.post("/api/v1/tokens/", body, format="json")
    assert refused.status_code == 400 and "otp_code" in refused.json()["fields"]
    recovery = client.post("/api/v1/tokens/", {**body, "otp_code": codes[0]}, format="json")
    assert recovery.status_code == 400  # the app's code, not a recovery code
    made = client.post("/api/v1/tokens/", {**body, "otp_code": next_code(totp)}, format="json")
    assert made.status_code == 201 and made.json()["token"].startswith("hp_")
    assert "otp_code" not in made.json()


def test_turning_it_off_needs_the_password_and_a_code():
    user = make_user()
    totp, _ = enrol(user)
    client = client_for(user)
    no_code = client.post(f"{ME}disable/", {"password": PASSWORD, "code": "999999"}, format="json")
    assert no_code.status_code == 400
    bad_password = client.post(
        f"{ME}disable/", {"password": "x", "code": next_code(totp)}, format="json"
    )
    assert bad_password.status_code == 400
    done = client.post(f"{ME}disable/", {"password": PASSWORD, "code": next_code(totp)},
                       format="json")  # fmt: skip
    assert done.status_code == 204
    assert not TwoFactorDevice.objects.filter(user=user).exists()
    assert not RecoveryCode.objects.filter(user=user).exists()
    assert AuditLog.objects.filter(action=actions.TWO_FACTOR_DISABLE, target_id=str(user.pk))


def test_renewed_recovery_codes_replace_the_old_ones():
    user = make_user()
    totp, old = enrol(user)
    client = client_for(user)
    renewed = client.post(f"{ME}recovery-codes/", {"code": next_code(totp)}, format="json")
    assert renewed.status_code == 200
    new = renewed.json()["recovery_codes"]
    assert set(new).isdisjoint(old)
    assert two_factor.verify(user, old[1]) is None
    assert two_factor.verify(user, new[1]) == two_factor.RECOVERY


def test_staff_must_turn_it_on_first_when_the_setting_says_so(settings):
    settings.TWO_FACTOR_REQUIRED_FOR_STAFF = True
    staff = make_user(is_staff=True)
    client = client_for(staff)
    admin = client.get("/admin/")
    assert admin.status_code == 302
    assert admin["Location"] == "/account/?two_factor=required#two-factor"
    api = client.get("/api/v1/hosts/")
    assert api.status_code == 403 and api.json()["code"] == "two_factor_required"
    assert client.get("/account/").status_code == 200
    assert client.get(ME).json()["required"] is True

    totp, _ = enrol(staff)
    assert client.get("/admin/").status_code == 200
    assert client.get("/api/v1/hosts/").status_code == 200
    keep = client.post(f"{ME}disable/", {"password": PASSWORD, "code": next_code(totp)},
                       format="json")  # fmt: skip
    assert keep.status_code == 400 and two_factor.is_enabled(staff)
    # Not staff: the setting does not apply.
    assert client_for(make_user()).get("/api/v1/me/").status_code == 200


def test_tokens_cannot_manage_the_second_factor():
    from tests.conftest import token_client

    user = make_user()
    client = token_client(user)
    assert client.post(ME, {"password": PASSWORD}, format="json").status_code == 403
    assert client.get(ME).status_code == 403
