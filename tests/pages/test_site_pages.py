"""Tenant pages: members get the page shell, outsiders a 404, anonymous users the login."""

import pytest

from hosting import services
from hosting.models import DockerHost
from tests.conftest import client_for


@pytest.fixture
def site(cast):
    services.create_host(actor=None, name="idle", endpoint="unix:///nonexistent.sock")
    return services.create_site(
        cast.org, actor=None, name="Blog", site_type="static", desired_state="stopped"
    )


def test_member_sees_the_site_pages(cast, site):
    client = client_for(cast.viewer)
    listing = client.get("/o/acme/")
    assert listing.status_code == 200
    assert b"/api/v1/organizations/acme/sites/" in listing.content
    detail = client.get("/o/acme/sites/blog/")
    assert detail.status_code == 200
    assert b"/log/stream/" in detail.content  # the live deployment log


def test_outsider_gets_404_on_every_page(cast, site):
    client = client_for(cast.outsider)
    assert client.get("/o/acme/").status_code == 404
    assert client.get("/o/acme/sites/blog/").status_code == 404


def test_deleted_site_page_is_404(cast, site):
    services.delete_site(site, actor=None)
    assert client_for(cast.owner).get("/o/acme/sites/blog/").status_code == 404


def test_anonymous_is_sent_to_login(site, client):
    response = client.get("/o/acme/sites/blog/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_site_page_links_to_the_site_and_tells_sleeping_from_waking(cast, site):
    page = client_for(cast.viewer).get("/o/acme/sites/blog/").content.decode()
    assert "its host has no proxy yet" in page and 'id="url"' not in page
    DockerHost.objects.filter(name="idle").update(proxy_admin="unix:///x/admin.sock")
    page = client_for(cast.viewer).get("/o/acme/sites/blog/").content.decode()
    assert '<a id="url" href="http://blog-acme.sites.localhost:8080/"' in page
    assert "wakes on its next visit" in page and "waking up" in page
