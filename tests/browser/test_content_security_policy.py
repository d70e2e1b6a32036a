"""The Content-Security-Policy allows no inline script, and nothing the panel serves needs
one: the console, Swagger UI and the admin run in Chromium with no violation (the `browse`
fixture fails a test on any console error, CSP reports included)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.factories import make_user

pytestmark = pytest.mark.browser


def test_swagger_ui_and_the_admin_run_under_the_policy(browse, transactional_db):
    staff = make_user("root@example.test", is_staff=True, is_superuser=True)
    page = browse(staff).page
    page.goto("/api/v1/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("hostpanel")
    page.goto("/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto("/admin/hosting/site/")
    page.wait_for_load_state("networkidle")


def test_an_inline_script_would_be_refused(browse, transactional_db):
    watched = browse(make_user())
    page = watched.page
    page.goto("/account/")
    ran = page.evaluate(
        """() => new Promise(resolve => {
            document.addEventListener("securitypolicyviolation", () => resolve("refused"));
            const s = document.createElement("script");
            s.textContent = "window.__ran = true";
            document.body.append(s);
            setTimeout(() => resolve(window.__ran ? "ran" : "refused"), 500);
        })"""
    )
    assert ran == "refused"
    page.wait_for_timeout(300)  # the console message follows the event
    assert any("Content Security Policy" in p for p in watched.problems)
    watched.problems.clear()  # the one violation this test made on purpose
