"""TCP port forwards: a pool per host, an organization quota, audited, released on delete."""

from __future__ import annotations

import pytest

from audit.models import AuditLog
from hosting import docker as engine
from hosting import forwards, services
from hosting.models import PortForward
from tests.conftest import client_for
from tests.hosting.factories import ensure_host, make_site, site_url

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def pool(settings):
    settings.PORT_FORWARD_RANGE = (41000, 41009)
    host = ensure_host()
    host.network_mode = "host"
    host.public_address = "127.0.0.1"
    host.save()


def forwards_url(org, slug="web") -> str:
    return site_url(org, slug, "port-forwards")


def test_ports_come_from_the_pool_once_per_host(cast):
    services.update_quota(cast.org, actor=None, max_port_forwards=5)
    web = make_site(cast.org, name="Web", slug="web")
    db = make_site(cast.org, name="Db", slug="db")
    first = forwards.add(web, actor=cast.owner, container_port=5432)
    second = forwards.add(db, actor=cast.owner, container_port=5432)
    assert (first.public_port, second.public_port) == (41000, 41001)
    other = services.create_host(actor=None, name="other", endpoint="unix:///nonexistent-2.sock")
    other.network_mode = "host"
    other.save()
    elsewhere = make_site(cast.org, name="Far", slug="far", host=other)
    assert forwards.add(elsewhere, actor=cast.owner, container_port=25565).public_port == 41000

    forwards.remove(first, actor=cast.owner)
    again = forwards.add(db, actor=cast.owner, container_port=6379)
    assert again.public_port == 41000  # released ports are given again
    entries = AuditLog.objects.filter(action__startswith="port_forward.").order_by("timestamp")
    assert [e.action for e in entries] == ["port_forward.add"] * 3 + [
        "port_forward.remove",
        "port_forward.add",
    ]
    assert entries[0].changes == {"container_port": 5432, "public_port": 41000, "host": "local"}


def test_the_quota_the_pool_and_the_network_mode_refuse_with_a_reason(cast, settings):
    site = make_site(cast.org, name="Web", slug="web")
    forwards.add(site, actor=cast.owner, container_port=1)
    forwards.add(site, actor=cast.owner, container_port=2)
    with pytest.raises(services.ValidationError, match="max_port_forwards is 2; this would be 3"):
        forwards.add(site, actor=cast.owner, container_port=3)
    with pytest.raises(services.ValidationError, match="forwarded already"):
        forwards.add(site, actor=cast.owner, container_port=2)
    services.update_quota(cast.org, actor=None, max_port_forwards=50)
    settings.PORT_FORWARD_RANGE = (41000, 41001)
    with pytest.raises(services.ValidationError, match="No public port is left on local"):
        forwards.add(site, actor=cast.owner, container_port=3)
    site.host.network_mode = "none"
    site.host.save()
    with pytest.raises(services.ValidationError, match="have no network"):
        forwards.add(site, actor=cast.owner, container_port=4)
    assert PortForward.objects.count() == 2


def test_deleting_the_site_releases_its_ports(cast):
    site = make_site(cast.org, name="Web", slug="web")
    forwards.add(site, actor=cast.owner, container_port=5432)
    services.delete_site(site, actor=cast.owner)
    assert not PortForward.objects.exists()
    released = AuditLog.objects.get(action="port_forward.remove")
    assert released.changes == {"released": [41000], "host": "local"}


def test_the_api_lists_to_viewers_adds_for_admins_and_hides_from_outsiders(cast):
    site = make_site(cast.org, name="Web", slug="web")
    url = forwards_url(cast.org)
    assert client_for(cast.member).post(url, {"container_port": 80}).status_code == 403
    created = client_for(cast.admin).post(url, {"container_port": 27015}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["container_port"], body["public_port"], body["address"]) == (
        27015,
        41000,
        "127.0.0.1",
    )
    listed = client_for(cast.viewer).get(url)
    assert [f["public_port"] for f in listed.json()["results"]] == [41000]
    assert client_for(cast.outsider).get(url).status_code == 404
    assert client_for(cast.other_owner).get(url).status_code == 404
    bad = client_for(cast.admin).post(url, {"container_port": 70000}, format="json")
    assert bad.status_code == 400 and "container_port" in bad.json()["fields"]
    quota = client_for(cast.viewer).get(f"/api/v1/organizations/{cast.org.slug}/quota/").json()
    assert (quota["usage"]["port_forwards"], quota["max_port_forwards"]) == (1, 2)
    gone = client_for(cast.admin).delete(f"{url}{body['id']}/")
    assert gone.status_code == 204
    assert not PortForward.objects.filter(site=site).exists()


def test_the_container_publishes_its_forwards():
    from tests.hosting.test_spec import host_of, limits_of, site_of

    site = site_of("docker")
    bridge = host_of(network_mode="bridge", address="127.0.0.1", public_address="203.0.113.7")
    spec = engine.container_spec(site, limits_of(), {}, bridge, forwards=[(5432, 41000)])
    assert spec["ports"]["5432/tcp"] == ("203.0.113.7", 41000)
    assert spec["ports"]["8080/tcp"] == ("127.0.0.1", 8080)  # the web port stays private
    assert spec["environment"]["TCP_PORT_5432"] == "5432"
    host = host_of(network_mode="host", address="127.0.0.1")
    spec = engine.container_spec(site, limits_of(), {}, host, forwards=[(5432, 41000)])
    assert "ports" not in spec  # no engine in between: the app listens on the public port
    assert spec["environment"]["TCP_PORT_5432"] == "41000"
    assert spec["environment"]["PUBLIC_HOST"] == "127.0.0.1"
