"""`/api/v1/hosts/` (staff only) and `/api/v1/site-templates/` (any signed-in user)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from audit.models import AuditLog
from hosting import placement, services
from hosting.models import DockerHost, HostStatus
from tests.api_mixin import TopLevelEndpointMixin, assert_error, assert_field_errors
from tests.conftest import client_for, token_client
from tests.hosting.factories import (
    SSH_HOST_KEY,
    UNREACHABLE_ENDPOINT,
    ensure_host,
    make_template,
    unique,
)

HOSTS = "/api/v1/hosts/"
TEMPLATES = "/api/v1/site-templates/"


def host_url(host: DockerHost, action: str = "") -> str:
    return f"{HOSTS}{host.pk}/{action + '/' if action else ''}"


# --- hosts: who may call -------------------------------------------------------------------------


def test_staff_lists_hosts(staff):
    host = ensure_host("engine-a")
    response = client_for(staff).get(HOSTS)
    assert response.status_code == 200, response.content
    (listed,) = response.json()["results"]
    assert (listed["name"], listed["endpoint"], listed["status"]) == (
        "engine-a",
        UNREACHABLE_ENDPOINT,
        "online",
    )
    assert listed["id"] == str(host.pk)


def test_anonymous_gets_401(db):
    host = ensure_host()
    assert_error(APIClient().get(HOSTS), 401, "not_authenticated")
    assert_error(APIClient().get(host_url(host)), 401, "not_authenticated")


@pytest.mark.parametrize("who", ["owner", "admin", "member", "outsider"])
def test_non_staff_gets_403_everywhere(cast, who):
    host = ensure_host()
    client = client_for(getattr(cast, who))
    assert_error(client.get(HOSTS), 403, "permission_denied")
    assert_error(client.get(host_url(host)), 403, "permission_denied")
    created = client.post(HOSTS, {"name": "mine", "endpoint": "unix:///x.sock"}, format="json")
    assert_error(created, 403, "permission_denied")
    assert_error(client.patch(host_url(host), {"status": "maintenance"}), 403, "permission_denied")
    assert_error(client.post(host_url(host, "ping")), 403, "permission_denied")
    assert list(DockerHost.objects.values_list("name", "status")) == [("local", "online")]


def test_non_staff_token_gets_403(cast):
    ensure_host()
    client = token_client(cast.owner, ("read", "write", "deploy", "secrets:read"))
    assert_error(client.get(HOSTS), 403, "permission_denied")


def test_staff_read_only_token_cannot_create(staff):
    client = token_client(staff, ("read",))
    assert client.get(HOSTS).status_code == 200
    response = client.post(HOSTS, {"name": "h", "endpoint": "unix:///x.sock"}, format="json")
    assert_error(response, 403, "permission_denied")
    assert not DockerHost.objects.exists()


# --- hosts: create and change ---------------------------------------------------------------------


TLS_FILES = {
    "tls_ca_cert": "/etc/hostpanel/ca.pem",
    "tls_client_cert": "/etc/hostpanel/cert.pem",
    "tls_client_key": "/etc/hostpanel/key.pem",
}


@pytest.mark.parametrize(
    "endpoint",
    ["unix:///var/run/docker.sock", "tcp://docker-1.internal:2376", "ssh://deploy@docker-2"],
)
def test_staff_creates_a_host_with_a_supported_endpoint(staff, endpoint):
    tls = TLS_FILES if endpoint.startswith("tcp://") else {}
    pinned = {"ssh_host_key": SSH_HOST_KEY} if endpoint.startswith("ssh://") else {}
    response = client_for(staff).post(
        HOSTS, {"name": "engine-b", "endpoint": endpoint, **tls, **pinned}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["endpoint"] == endpoint
    host = DockerHost.objects.get(name="engine-b")
    row = AuditLog.objects.get(action="host.create")
    assert (row.actor, row.target_id) == (staff, str(host.pk))


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://x",
        "https://docker.example.com:2376",
        "unix://relative.sock",
        "x",
        "",
        "tcp://docker-1.internal:2375",
    ],  # the last: plain tcp:// without TLS files
)
def test_create_refuses_other_endpoint_schemes(staff, endpoint):
    response = client_for(staff).post(
        HOSTS, {"name": "engine-b", "endpoint": endpoint}, format="json"
    )
    assert "endpoint" in assert_field_errors(response)
    assert not DockerHost.objects.exists()
    assert not AuditLog.objects.filter(action="host.create").exists()


def test_duplicate_host_name_is_400(staff):
    ensure_host("engine-a")
    response = client_for(staff).post(
        HOSTS, {"name": "engine-a", "endpoint": "unix:///other.sock"}, format="json"
    )
    assert "name" in assert_field_errors(response)
    assert DockerHost.objects.count() == 1


def test_staff_puts_a_host_in_maintenance(staff):
    host = ensure_host()
    response = client_for(staff).patch(host_url(host), {"status": "maintenance"})
    assert response.status_code == 200, response.content
    host.refresh_from_db()
    assert host.status == HostStatus.MAINTENANCE
    row = AuditLog.objects.get(action="host.update")
    assert row.changes == {"before": {"status": "online"}, "after": {"status": "maintenance"}}


def test_engine_facts_are_read_only(staff):
    host = ensure_host()
    response = client_for(staff).patch(
        host_url(host), {"cpus": 64, "engine_version": "99"}, format="json"
    )
    assert response.status_code == 200, response.content
    host.refresh_from_db()
    assert (host.cpus, host.engine_version) == (0, "")


def test_hosts_cannot_be_deleted_through_the_api(staff):
    host = ensure_host()
    assert client_for(staff).delete(host_url(host)).status_code == 405
    assert DockerHost.objects.filter(pk=host.pk).exists()


# --- hosts: ping ----------------------------------------------------------------------------------


def test_ping_of_an_unreachable_engine_marks_it_offline(staff):
    host = ensure_host()

    response = client_for(staff).post(host_url(host, "ping"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "offline"
    assert body["last_error"]
    host.refresh_from_db()
    assert host.status == HostStatus.OFFLINE
    row = AuditLog.objects.get(action="host.offline")
    assert (row.actor, row.target_id) == (staff, str(host.pk))
    assert row.changes["reason"]


def test_ping_of_an_unreachable_host_in_maintenance_keeps_maintenance(staff):
    host = services.create_host(
        actor=None, name="engine-m", endpoint=UNREACHABLE_ENDPOINT, status=HostStatus.MAINTENANCE
    )
    response = client_for(staff).post(host_url(host, "ping"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "maintenance"
    assert not AuditLog.objects.filter(action="host.offline").exists()


def test_offline_host_is_not_used_for_placement(cast, staff):
    host = ensure_host()
    assert client_for(staff).post(host_url(host, "ping")).json()["status"] == "offline"
    with pytest.raises(services.NoHostAvailable):
        placement.choose_host(64)


# --- site templates -------------------------------------------------------------------------------


def test_any_signed_in_user_lists_only_active_templates(cast):
    make_template(slug="wordpress", image="example/wordpress:6", default_limits={"memory_mb": 256})
    make_template(slug="static-site", site_type="static", image="")
    make_template(slug="retired", is_active=False)

    response = client_for(cast.outsider).get(TEMPLATES)

    assert response.status_code == 200, response.content
    by_slug = {t["slug"]: t for t in response.json()["results"]}
    assert set(by_slug) == {"wordpress", "static-site"}
    assert by_slug["wordpress"]["image"] == "example/wordpress:6"
    assert by_slug["wordpress"]["default_limits"] == {"memory_mb": 256}


def test_inactive_template_is_404(cast):
    make_template(slug="retired", is_active=False)
    assert_error(client_for(cast.member).get(f"{TEMPLATES}retired/"), 404, "not_found")


def test_active_template_detail(cast):
    make_template(slug="wordpress", env_keys=["DB_URL"])
    response = client_for(cast.viewer).get(f"{TEMPLATES}wordpress/")
    assert response.status_code == 200, response.content
    assert response.json()["env_keys"] == ["DB_URL"]


def test_templates_need_sign_in(db):
    make_template(slug="wordpress")
    assert_error(APIClient().get(TEMPLATES), 401, "not_authenticated")


def test_templates_are_read_only_through_the_api(cast, staff):
    for user in (cast.owner, staff):
        response = client_for(user).post(TEMPLATES, {"name": "Mine", "slug": "mine"}, format="json")
        assert response.status_code == 405
    assert not AuditLog.objects.filter(action="template.create").exists()


def test_template_filters(cast):
    make_template(slug="wordpress", name="WordPress")
    make_template(slug="docs", name="Docs", site_type="static", image="")
    client = client_for(cast.member)
    assert [t["slug"] for t in client.get(TEMPLATES, {"q": "word"}).json()["results"]] == [
        "wordpress"
    ]
    assert [
        t["slug"] for t in client.get(TEMPLATES, {"site_type": "static"}).json()["results"]
    ] == ["docs"]


def test_save_template_refuses_unknown_limits(db):
    with pytest.raises(ValidationError) as error:
        make_template(slug="bad", default_limits={"memory_mb": 64, "gpus": 2})
    assert "gpus" in str(error.value)


def test_save_template_is_audited(db, staff):
    template = make_template(slug="wordpress", actor=staff)
    template.image = "example/wordpress:7"
    services.save_template(template, actor=staff)
    rows = AuditLog.objects.filter(target_id=str(template.pk))
    assert sorted(rows.values_list("action", flat=True)) == ["template.create", "template.update"]
    update = rows.get(action="template.update")
    assert update.actor == staff
    assert update.changes["after"] == {"image": "example/wordpress:7"}


# --- the generic endpoint tests --------------------------------------------------------------


class TestHostApi(TopLevelEndpointMixin):
    audit_actions = {"create": "host.create", "update": "host.update", "delete": None}
    visibility, readers, writers = "all", "staff", "staff"
    max_list_queries = 3  # session, user, page

    def list_url(self):
        return HOSTS

    def detail_url(self, obj):
        return host_url(obj)

    def make_object(self, user):
        return services.create_host(
            actor=None, name=unique("engine-"), endpoint=UNREACHABLE_ENDPOINT
        )

    def create_data(self):
        return {"name": unique("engine-"), "endpoint": "unix:///var/run/other.sock"}

    def update_data(self):
        return {"status": "maintenance"}


class TestTemplateApi(TopLevelEndpointMixin):
    audit_actions = {"create": None, "update": None, "delete": None}  # staff use the admin
    visibility, readers = "all", "user"
    max_list_queries = 3  # session, user, page

    def list_url(self):
        return TEMPLATES

    def detail_url(self, obj):
        return f"{TEMPLATES}{obj.slug}/"

    def make_object(self, user):
        return make_template()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "needs its host key pinned"),
        ("ssh-ed25519", "Give the host's public key"),
        ("ssh-dss AAAAB3NzaC1kc3M=", "Give the host's public key"),
        ("ssh-ed25519 bm90IGEga2V5", "Not a valid ssh-ed25519 key"),
    ],
)
def test_an_ssh_host_without_a_valid_pinned_key_is_refused(staff, key, message):
    response = client_for(staff).post(
        HOSTS,
        {"name": "engine-b", "endpoint": "ssh://deploy@docker-2", "ssh_host_key": key},
        format="json",
    )
    fields = assert_field_errors(response, "ssh_host_key")
    assert message in str(fields["ssh_host_key"])
    assert not DockerHost.objects.filter(name="engine-b").exists()
