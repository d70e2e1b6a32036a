"""Private sites and their share links: the API (generic endpoint tests) and the proxy's
forward_auth answers (tests/integration/test_proxy.py goes through the real Caddy)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from django.utils import timezone

from accounts.models import Membership, Role
from accounts.secrets import keyed_hash
from audit.models import AuditLog
from hosting import proxy, services
from hosting.api.edge import member_cookie_name, share_cookie_name
from hosting.models import DockerHost, ShareLink, Site, VisitPass
from tests.api_mixin import ApiEndpointMixin
from tests.conftest import client_for
from tests.hosting.factories import SITE_SLUG, site_url, the_site

pytestmark = pytest.mark.django_db


def links_url(org) -> str:
    return site_url(org, SITE_SLUG, "share-links")


def make_link(site, days=1, **fields):
    return services.create_share_link(
        site, actor=None, expires_at=timezone.now() + timedelta(days=days), **fields
    )


class TestShareLinkApi(ApiEndpointMixin):
    audit_actions = {"create": "share_link.create", "update": None, "delete": "share_link.revoke"}
    min_roles = {"read": Role.ADMIN, "create": Role.ADMIN, "delete": Role.ADMIN}
    max_list_queries = 5  # session, user, organization, site, page

    @pytest.fixture(autouse=True)
    def _sites(self, cast):
        the_site(cast.org)
        the_site(cast.other_org)

    def list_url(self, cast):
        return links_url(cast.org)

    def detail_url(self, cast, obj):
        return f"{links_url(cast.org)}{obj.pk}/"

    def make_object(self, cast):
        return make_link(the_site(cast.org), label="review")[0]

    def create_data(self, cast):
        return {"label": "client", "expires_at": (timezone.now() + timedelta(days=7)).isoformat()}

    def assert_matches(self, data, body):
        assert body["label"] == data["label"]


def test_the_token_is_shown_once_and_stored_as_a_hash(cast):
    site = the_site(cast.org)
    DockerHost.objects.filter(pk=site.host_id).update(proxy_admin="unix:///x/admin.sock")
    expires = (timezone.now() + timedelta(days=1)).isoformat()
    body = client_for(cast.admin).post(links_url(cast.org), {"expires_at": expires}).json()
    assert body["url"] == f"http://web-acme.sites.localhost:8080/?hp_share={body['token']}"
    link = ShareLink.objects.get(pk=body["id"])
    assert body["token"] not in link.token_hash and len(link.token_hash) == 64
    listed = client_for(cast.admin).get(links_url(cast.org)).json()["results"]
    assert "token" not in listed[0] and listed[0]["active"] is True
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    refused = client_for(cast.admin).post(links_url(cast.org), {"expires_at": past})
    assert refused.status_code == 400 and "expires_at" in refused.json()["fields"]


def ask(api, site, uri="/", cookie=None):
    if cookie is not None:
        api.cookies[cookie[0]] = cookie[1]
    return api.get(f"/api/v1/proxy/auth/{site.pk}/", HTTP_X_FORWARDED_URI=uri)


def test_forward_auth_swaps_a_token_for_a_cookie_and_then_lets_it_through(cast, api):
    site = the_site(cast.org)
    Site.objects.filter(pk=site.pk).update(is_private=True)
    link, token = make_link(site, label="review")

    assert ask(api, site).status_code == 401
    swapped = ask(api, site, f"/docs/?a=1&hp_share={token}&b=2")
    assert swapped.status_code == 302
    assert swapped["Location"] == "/docs/?a=1&b=2"
    cookie = swapped.cookies[share_cookie_name(site)]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert ask(api, site, "/docs/", (cookie.key, cookie.value)).status_code == 200
    link.refresh_from_db()
    assert link.uses == 1 and link.last_used_at is not None
    assert AuditLog.objects.filter(action="share_link.use", target_id=str(link.pk)).count() == 1

    services.revoke_share_link(link, actor=None)  # revoked: the cookie stops working too
    assert ask(api, site, "/docs/", (cookie.key, cookie.value)).status_code == 401
    assert ask(api, site, f"/?hp_share={token}").status_code == 401


def test_forward_auth_refuses_expired_links_forged_cookies_and_other_sites_tokens(cast, api):
    site = the_site(cast.org)
    other = the_site(cast.other_org)
    Site.objects.filter(pk__in=[site.pk, other.pk]).update(is_private=True)
    expired, expired_token = make_link(site)
    ShareLink.objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    _, other_token = make_link(other)

    assert ask(api, site, f"/?hp_share={expired_token}").status_code == 401
    assert ask(api, site, f"/?hp_share={other_token}").status_code == 401
    forged = (share_cookie_name(site), str(expired.pk))
    assert ask(api, site, "/", forged).status_code == 401
    page = ask(api, site)
    assert b"This site is private" in page.content


def test_a_private_site_is_asked_of_the_panel_first(cast, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    site = the_site(cast.org)
    host = DockerHost.objects.get(pk=site.host_id)
    Site.objects.filter(pk=site.pk).update(
        is_private=True, desired_state="running", observed_state="running"
    )
    from hosting.models import Container

    Container.objects.create(
        host=host, site=site, docker_id="c1", name="c1", image="x", state="running",
        port=31000, created=timezone.now(),
    )  # fmt: skip
    host.proxy_admin = "unix:///x/admin.sock"
    routes = proxy.render(host)["apps"]["http"]["servers"][proxy.SERVER]["routes"]
    handler = next(r for r in routes if r.get("@id") == f"site-{site.pk}")["handle"][0]
    ask_panel, serve = handler["routes"][0]["handle"]
    assert ask_panel["rewrite"] == {"method": "GET", "uri": f"/api/v1/proxy/auth/{site.pk}/"}
    assert ask_panel["upstreams"] == [{"dial": "127.0.0.1:8000"}]
    [passed] = ask_panel["handle_response"]
    assert passed["match"] == {"status_code": [2]}
    assert passed["routes"][0]["handle"][0]["handler"] == "headers"  # writes nothing: on
    assert serve["upstreams"] == [{"dial": "127.0.0.1:31000"}]


# --- members signed in through the panel ------------------------------------------------------


def private_site(org):
    site = the_site(org)
    Site.objects.filter(pk=site.pk).update(is_private=True)
    DockerHost.objects.filter(pk=site.host_id).update(proxy_admin="unix:///x/admin.sock")
    return Site.objects.get(pk=site.pk)


def visit(client, site, next_url=""):
    return client.get(f"/visit/{site.pk}/", {"next": next_url} if next_url else {})


def pass_of(response) -> str:
    query = dict(parse_qsl(urlsplit(response["Location"]).query))
    return query[services.VISIT_PASS_PARAM]


def test_a_browser_without_a_cookie_is_sent_to_the_panel_to_sign_in(cast, api, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    site = private_site(cast.org)
    asked = api.get(
        f"/api/v1/proxy/auth/{site.pk}/",
        HTTP_X_FORWARDED_URI="/docs/?a=1",
        HTTP_X_HOSTPANEL_HOST="web-acme.sites.localhost:8080",
        HTTP_X_HOSTPANEL_SCHEME="http",
        HTTP_ACCEPT="text/html,application/xhtml+xml",
    )
    assert asked.status_code == 302
    assert asked["Location"] == (
        f"http://127.0.0.1:8000/visit/{site.pk}/?next="
        + quote("http://web-acme.sites.localhost:8080/docs/?a=1", safe="")
    )
    # Not a browser (or not a GET): the 401 page, which links to the same sign-in.
    page = ask(api, site, "/docs/")
    assert page.status_code == 401 and f"/visit/{site.pk}/".encode() in page.content


def test_a_member_gets_a_one_time_pass_that_becomes_the_sites_cookie(cast, api):
    site = private_site(cast.org)
    address = "http://web-acme.sites.localhost:8080/docs/?a=1"
    sent = visit(client_for(cast.viewer), site, address)  # any role may look
    assert sent.status_code == 302 and sent["Location"].startswith(address + "&hp_pass=")
    token = pass_of(sent)
    assert AuditLog.objects.filter(
        action="site.member_visit", target_id=str(site.pk), actor=cast.viewer
    ).exists()

    swapped = ask(api, site, f"/docs/?a=1&hp_pass={token}")
    assert swapped.status_code == 302 and swapped["Location"] == "/docs/?a=1"
    cookie = swapped.cookies[member_cookie_name(site)]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == 12 * 3600
    assert ask(api, site, "/", (cookie.key, cookie.value)).status_code == 200

    api.cookies.clear()
    assert ask(api, site, f"/?hp_pass={token}").status_code == 401  # spent
    Membership.objects.filter(user=cast.viewer, organization=cast.org).delete()
    assert ask(api, site, "/", (cookie.key, cookie.value)).status_code == 401  # left: over


def test_passes_and_cookies_do_not_cross_sites_or_outlive_their_time(cast, api, settings):
    site = private_site(cast.org)
    other = private_site(cast.other_org)
    token = pass_of(visit(client_for(cast.member), site))
    assert ask(api, other, f"/?hp_pass={token}").status_code == 401  # another site's pass
    late = pass_of(visit(client_for(cast.member), site))
    VisitPass.objects.filter(token_hash=keyed_hash(late)).update(expires_at=timezone.now())
    assert ask(api, site, f"/?hp_pass={late}").status_code == 401

    swapped = ask(api, site, f"/?hp_pass={pass_of(visit(client_for(cast.member), site))}")
    cookie = swapped.cookies[member_cookie_name(site)]
    api.cookies.clear()
    assert ask(api, other, "/", (member_cookie_name(other), cookie.value)).status_code == 401
    settings.PRIVATE_SITE_SIGN_IN_HOURS = 0  # older than the sign-in lasts
    assert ask(api, site, "/", (cookie.key, cookie.value)).status_code == 401


def test_the_visit_page_is_for_members_and_only_sends_them_to_the_sites_names(cast, client):
    site = private_site(cast.org)
    assert visit(client_for(cast.outsider), site).status_code == 404
    assert visit(client_for(cast.other_owner), site).status_code == 404
    anonymous = visit(client, site)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")

    member = client_for(cast.member)
    for elsewhere in ("http://evil.example/", "javascript:alert(1)", "//evil.example/"):
        sent = visit(member, site, elsewhere)  # never an open redirect: the site's own URL
        assert sent["Location"].startswith("http://web-acme.sites.localhost:8080/?hp_pass=")
    Site.objects.filter(pk=site.pk).update(is_private=False)
    assert visit(member, site)["Location"] == "http://web-acme.sites.localhost:8080/"
    services.delete_site(site, actor=None)
    assert visit(member, site).status_code == 404
