"""axe-core (vendored: tests/browser/vendor, refreshed by bin/vendor) on every console page,
filled with data: no serious or critical violation."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from accounts import services as accounts
from accounts.models import Role
from console.views import ORG_SECTIONS, SITE_SECTIONS
from hosting import services
from tests.factories import add_member, make_org, make_user
from tests.hosting.factories import make_domain, make_env, make_site

pytestmark = pytest.mark.browser
AXE = next((Path(__file__).parent / "vendor").glob("axe-core-*/axe.min.js"))


def violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations
              .filter(v => v.impact === "serious" || v.impact === "critical")
              .map(v => `${v.id} (${v.impact}): ` +
                        v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
        }"""
    )
    return found


def test_every_page_has_no_serious_accessibility_violation(browse, transactional_db):
    owner = make_user("olive@example.test")
    org = make_org(owner, "Acme", slug="acme")
    add_member(org, make_user("vic@example.test"), Role.VIEWER)
    services.create_host(actor=None, name="idle", endpoint="unix:///nonexistent/docker.sock")
    site = make_site(org, name="Web", slug="web")
    make_env(site, key="API_KEY", value="x", is_secret=True)
    make_domain(site, hostname="www.example.com")
    _, code = accounts.invite(org, email="newt@example.test", role=Role.MEMBER, actor=owner)
    pages = [reverse("home"), reverse("account"), reverse("tokens")]
    pages += [reverse("org-sites", args=["acme"]), reverse("site-new", args=["acme"])]
    pages += [reverse("org-section", args=["acme", s]) for s in ORG_SECTIONS if s != "sites"]
    pages += [reverse("site-detail", args=["acme", "web"])]
    pages += [reverse("site-section", args=["acme", "web", s]) for s in SITE_SECTIONS]
    page = browse(owner, bypass_csp=True).page
    problems = {}
    for url in pages:
        page.goto(url)
        page.wait_for_load_state("networkidle")
        if found := violations(page):
            problems[url] = found
    anonymous = browse(bypass_csp=True).page
    for url in ("/login/", "/register/", "/password-reset/", f"/invitations/{code}/"):
        anonymous.goto(url)
        if found := violations(anonymous):
            problems[url] = found
    assert not problems, "\n".join(f"{u}: {v}" for u, v in problems.items())
