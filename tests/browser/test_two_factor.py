"""Two-factor sign-in and sessions from the account page, in a real browser: set up the
authenticator (QR code and secret), sign in again with its code, end another session."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import expect

from accounts import two_factor
from accounts.models import UserSession
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.browser


def test_set_up_the_authenticator_then_sign_in_with_it(browse, transactional_db):
    user = make_user("tess@example.test")
    page = browse(user).page
    page.goto("/account/")
    expect(page.locator("#tf-state")).to_have_text("Off.")
    page.get_by_label("Your password").first.fill(PASSWORD)
    page.get_by_role("button", name="Set up an authenticator").click()
    expect(page.locator("#tf-qr")).to_have_attribute("src", re.compile("^data:image/svg"))
    secret = page.locator("#tf-secret code").inner_text()
    totp = pyotp.TOTP(secret)
    page.get_by_label("The 6-digit code the app shows now").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_text("Two-factor sign-in is on.")).to_be_visible()
    expect(page.locator(".secret-once")).to_contain_text("Recovery codes")
    expect(page.locator("#tf-state")).to_contain_text("On since")
    assert two_factor.is_enabled(user)

    fresh = browse().page
    fresh.goto("/login/?next=/account/")
    fresh.get_by_label("Email").fill(user.email)
    fresh.get_by_label("Password").fill(PASSWORD)
    fresh.get_by_role("button", name="Sign in").click()
    expect(fresh.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    fresh.get_by_label("Code").fill(totp.at(time.time() + 30))
    fresh.get_by_role("button", name="Sign in").click()
    fresh.wait_for_url("**/account/")
    expect(fresh.locator("#sessions")).to_contain_text("(this one)")


def test_end_another_session_from_the_list(browse, transactional_db):
    user = make_user("sam@example.test")
    elsewhere = browse(user).page
    elsewhere.goto("/account/")
    page = browse(user).page
    page.goto("/account/")
    rows = page.locator("#sessions tbody tr")
    expect(rows).to_have_count(2)
    rows.filter(has_not_text="(this one)").get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("That session has ended.")).to_be_visible()
    expect(rows).to_have_count(1)
    assert UserSession.objects.filter(user=user).count() == 1
    elsewhere.goto("/account/")
    elsewhere.wait_for_url(re.compile(r"/login/"))
