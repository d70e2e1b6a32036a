"""Console pages: every page renders for members (header, page data, its own script) and is
a 404 for outsiders and for other organizations' members; anonymous visitors sign in first.
The URL list comes from console.urls, so a new page is covered here without a new test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.urls import URLPattern, reverse

from console import urls as console_urls
from console.views import ORG_SECTIONS, SITE_SECTIONS
from hosting import services
from tests.conftest import client_for
from tests.hosting.factories import SITE_SLUG, the_site

pytestmark = pytest.mark.django_db

PUBLIC = {"invitation", "password_reset", "password_reset_done", "password_reset_confirm"}
PUBLIC |= {"password_reset_complete"}


def tenant_pages(org, site) -> list[str]:
    pages = [reverse("org-sites", args=[org.slug]), reverse("site-new", args=[org.slug])]
    pages += [reverse("org-section", args=[org.slug, s]) for s in ORG_SECTIONS if s != "sites"]
    pages.append(reverse("site-detail", args=[org.slug, site.slug]))
    pages += [reverse("site-section", args=[org.slug, site.slug, s]) for s in SITE_SECTIONS]
    return pages


def page_data(response) -> dict:
    match = re.search(
        rb'<script id="page-data" type="application/json">(.*?)</script>', response.content
    )
    assert match, "the page carries no page data"
    return json.loads(match[1])


def test_every_console_route_is_covered_by_these_tests():
    names = {p.name for p in console_urls.urlpatterns if isinstance(p, URLPattern)}
    covered = {"home", "account", "tokens", "org-sites", "site-new", "org-section"}
    covered |= {"site-detail", "site-section"} | PUBLIC
    assert names == covered, f"add {names - covered} to tests/console/test_pages.py"


def test_members_get_every_page_with_its_script(cast):
    site = the_site(cast.org)
    client = client_for(cast.viewer)
    for url in [
        reverse("home"),
        reverse("account"),
        reverse("tokens"),
        *tenant_pages(cast.org, site),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert 'id="org-switch"' in body and "console/console.css" in body, url
        assert re.search(r'<script type="module" src="/static/console/(pages/)?\w+\.js"', body), url
        assert "<script>" not in body, f"{url}: an inline script (the CSP will forbid them)"


def test_outsiders_and_other_organizations_get_404_on_every_tenant_page(cast):
    site = the_site(cast.org)
    for user in (cast.outsider, cast.other_owner):
        client = client_for(user)
        for url in tenant_pages(cast.org, site):
            response = client.get(url)
            assert response.status_code == 404, (user, url)
            assert b"Not found" in response.content and b'id="org-switch"' in response.content


def test_unknown_sections_and_deleted_sites_are_404(cast):
    site = the_site(cast.org)
    client = client_for(cast.owner)
    assert client.get(f"/o/acme/sites/{SITE_SLUG}/nonsense/").status_code == 404
    assert client.get("/o/acme/nonsense/").status_code == 404
    services.delete_site(site, actor=None)
    assert client.get(f"/o/acme/sites/{SITE_SLUG}/").status_code == 404


def test_anonymous_visitors_are_sent_to_sign_in(cast, client):
    site = the_site(cast.org)
    for url in [reverse("home"), reverse("account"), *tenant_pages(cast.org, site)]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_page_data_says_what_the_role_allows_and_why_not(cast):
    the_site(cast.org)
    url = reverse("site-section", args=["acme", SITE_SLUG, "settings"])
    viewer = page_data(client_for(cast.viewer).get(url))
    assert viewer["role"] == "viewer" and viewer["site"]["slug"] == SITE_SLUG
    assert viewer["can"]["site.delete"] == {
        "allowed": False,
        "reason": "This needs the owner role; you are viewer.",
    }
    assert viewer["can"]["site.update"]["allowed"] is False
    member = page_data(client_for(cast.member).get(url))
    assert member["can"]["site.update"]["allowed"] and member["can"]["deploy"]["allowed"]
    assert not member["can"]["domain.write"]["allowed"]  # admins manage domains
    owner = page_data(client_for(cast.owner).get(url))
    assert all(a["allowed"] for a in owner["can"].values())


def test_abilities_follow_the_apis_own_role_map():
    from console.abilities import ABILITIES, minimum_role
    from hosting.api.views import SiteViewSet

    assert minimum_role(SiteViewSet, "destroy", "DELETE") == SiteViewSet.minimum_roles["destroy"]
    for key, (viewset, action, _) in ABILITIES.items():
        assert hasattr(viewset, action), f"{key}: {viewset.__name__} has no {action}"


def test_the_404_page_of_the_console_has_the_header_and_the_api_keeps_json(cast):
    client = client_for(cast.viewer)
    page = client.get("/no/such/page/")
    assert page.status_code == 404 and b'id="org-switch"' in page.content
    api = client.get("/api/v1/no/such/")
    assert api.status_code == 404 and api.json()["code"] == "not_found"


def test_static_files_favicon_and_vendored_uplot_with_its_licence():
    from django.contrib.staticfiles import finders

    for name in ("console/console.js", "console/console.css", "console/favicon.svg"):
        assert finders.find(name), name
    assert "MIT" in Path(finders.find("console/vendor/uplot-1.6.32/LICENSE")).read_text()
    assert finders.find("console/vendor/uplot-1.6.32/uPlot.iife.min.js")
