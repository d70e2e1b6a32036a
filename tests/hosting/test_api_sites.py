"""/api/v1/organizations/{org}/sites/: creation rules, soft delete, restarts, templates,
tenancy of every nested endpoint. No engine is contacted: sites here are created stopped."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import Role
from audit.models import AuditLog
from hosting.models import Container, DockerHost, HostStatus, Site
from monitoring.models import SiteHealth
from tests.api_mixin import ApiEndpointMixin, assert_error, assert_field_errors
from tests.conftest import client_for
from tests.hosting.factories import (
    ensure_host,
    make_domain,
    make_env,
    make_site,
    make_template,
    site_url,
    sites_url,
    the_site,
    unique,
)


def create(client, org, **data):
    body = {"site_type": "docker", "image": "example/app:1", "desired_state": "stopped", **data}
    return client.post(sites_url(org), body, format="json")


class TestSiteApi(ApiEndpointMixin):
    audit_actions = {"create": "site.create", "update": "site.update", "delete": "site.delete"}
    min_roles = {
        "read": Role.VIEWER,
        "create": Role.MEMBER,
        "update": Role.MEMBER,
        "delete": Role.OWNER,
    }
    max_list_queries = 4  # session, user, organization (+role), page (it holds every row: no count)

    def list_url(self, cast):
        return sites_url(cast.org)

    def detail_url(self, cast, obj):
        return site_url(cast.org, obj.slug)

    def make_object(self, cast):
        return make_site(cast.org, actor=cast.owner)

    def create_data(self, cast):
        return {
            "name": unique("Shop "),
            "site_type": "docker",
            "image": "example/shop:2",
            "desired_state": "stopped",
        }

    def update_data(self, cast):
        return {"name": "Renamed site"}


# --- creation rules ------------------------------------------------------------------------


def test_slug_is_derived_from_name(cast):
    ensure_host()
    response = create(client_for(cast.member), cast.org, name="My Fancy Blog")
    assert response.status_code == 201, response.content
    assert response.json()["slug"] == "my-fancy-blog"
    assert Site.objects.get(organization=cast.org).slug == "my-fancy-blog"


def test_subdomain_is_site_dash_org_under_base_domain(cast, settings):
    settings.HOSTPANEL_BASE_DOMAIN = "hp.example.net"
    ensure_host()
    response = create(client_for(cast.member), cast.org, name="Blog")
    assert response.status_code == 201, response.content
    assert response.json()["subdomain"] == "blog-acme.hp.example.net"


def test_duplicate_slug_in_the_same_organization_is_400(cast):
    make_site(cast.org, name="Blog")
    response = create(client_for(cast.member), cast.org, name="Blog")
    assert_field_errors(response)
    assert "slug" in response.json()["detail"]
    assert Site.objects.filter(organization=cast.org).count() == 1


def test_duplicate_slug_error_is_reported_on_the_slug_field(cast):
    """'Errors are JSON with a message per field': the field at fault is `slug`."""
    make_site(cast.org, name="Blog")
    response = create(client_for(cast.member), cast.org, name="Blog", slug="blog")
    fields = assert_field_errors(response)
    assert "slug" in fields, fields
    assert "__all__" not in fields, fields


def test_same_slug_in_another_organization_is_fine(cast):
    make_site(cast.other_org, name="Blog")
    response = create(client_for(cast.member), cast.org, name="Blog")
    assert response.status_code == 201, response.content


def test_docker_site_needs_an_image(cast):
    ensure_host()
    response = create(client_for(cast.member), cast.org, name="Blog", image="")
    assert "image" in assert_field_errors(response)
    assert not Site.objects.exists()


def test_dynamic_site_needs_a_start_command(cast):
    ensure_host()
    response = create(client_for(cast.member), cast.org, name="App", site_type="dynamic")
    assert "start_command" in assert_field_errors(response)
    ok = create(
        client_for(cast.member), cast.org, name="App", site_type="dynamic", start_command="run"
    )
    assert ok.status_code == 201, ok.content


def test_stopped_site_is_placed_on_an_online_host_without_a_container(cast):
    host = ensure_host()
    response = create(client_for(cast.member), cast.org, name="Blog")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["host"] == host.name
    assert body["desired_state"] == "stopped"
    containers = client_for(cast.member).get(site_url(cast.org, "blog", "containers"))
    assert containers.json()["count"] == 0


def test_no_online_host_is_503_and_nothing_is_created(cast):
    host = ensure_host()
    host.status = HostStatus.MAINTENANCE
    host.save()
    response = create(client_for(cast.member), cast.org, name="Blog")
    assert_error(response, 503, "no_host_available")
    assert not Site.objects.exists()


def test_limits_given_at_creation_are_stored(cast):
    ensure_host()
    response = create(
        client_for(cast.member), cast.org, name="Blog", limits={"memory_mb": 128, "cpu_percent": 5}
    )
    assert response.status_code == 201, response.content
    assert response.json()["limits"]["memory_mb"] == 128
    limits = client_for(cast.viewer).get(site_url(cast.org, "blog", "limits")).json()
    assert (limits["memory_mb"], limits["cpu_percent"]) == (128, 5)


# --- templates -------------------------------------------------------------------------------


def test_site_from_template_takes_its_image_command_and_limits(cast):
    ensure_host()
    template = make_template(
        slug="wordpress",
        image="example/wordpress:6",
        start_command="serve --port 9000",
        internal_port=9000,
        default_limits={"memory_mb": 192, "cpu_percent": 30, "max_processes": 64},
    )
    response = client_for(cast.member).post(
        sites_url(cast.org),
        {"name": "Press", "template": template.slug, "desired_state": "stopped"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["template"] == "wordpress"
    assert body["image"] == "example/wordpress:6"
    assert body["start_command"] == "serve --port 9000"
    assert body["internal_port"] == 9000
    limits = body["limits"]
    assert (limits["memory_mb"], limits["cpu_percent"], limits["max_processes"]) == (192, 30, 64)
    site = Site.objects.get(slug="press")
    assert site.template == template
    assert site.limits.memory_mb == 192


def test_values_sent_with_a_template_override_it(cast):
    ensure_host()
    make_template(slug="base", image="example/base:1", default_limits={"memory_mb": 192})
    response = client_for(cast.member).post(
        sites_url(cast.org),
        {
            "name": "Custom",
            "template": "base",
            "image": "example/custom:2",
            "limits": {"memory_mb": 96},
            "desired_state": "stopped",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["image"] == "example/custom:2"
    assert response.json()["limits"]["memory_mb"] == 96


def test_inactive_template_cannot_be_used(cast):
    ensure_host()
    make_template(slug="retired", is_active=False)
    response = client_for(cast.member).post(
        sites_url(cast.org),
        {"name": "Old", "template": "retired", "desired_state": "stopped"},
        format="json",
    )
    assert "template" in assert_field_errors(response)


# --- updates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"image": "example/app:2"}, {"start_command": "serve --fast"}, {"internal_port": 9090}],
    ids=["image", "start_command", "internal_port"],
)
def test_changing_what_the_container_is_built_from_sets_needs_restart(cast, change):
    site = make_site(cast.org, name="Blog")
    assert site.needs_restart is False
    response = client_for(cast.member).patch(site_url(cast.org, "blog"), change, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["needs_restart"] is True
    site.refresh_from_db()
    assert site.needs_restart is True


def test_renaming_does_not_need_a_restart(cast):
    site = make_site(cast.org, name="Blog")
    response = client_for(cast.member).patch(site_url(cast.org, "blog"), {"name": "The Blog"})
    assert response.status_code == 200, response.content
    site.refresh_from_db()
    assert (site.name, site.slug, site.needs_restart) == ("The Blog", "blog", False)


@pytest.mark.parametrize(
    "change",
    [
        {"slug": "renamed"},
        {"site_type": "static"},
        {"desired_state": "running"},
        {"limits": {"memory_mb": 999}},
    ],
    ids=["slug", "site_type", "desired_state", "limits"],
)
def test_fields_that_cannot_be_patched_are_400(cast, change):
    site = make_site(cast.org, name="Blog")
    response = client_for(cast.owner).patch(site_url(cast.org, "blog"), change, format="json")
    assert set(change) <= set(assert_field_errors(response))
    fresh = Site.objects.get(pk=site.pk)
    assert (fresh.slug, fresh.site_type, fresh.desired_state) == ("blog", "docker", "stopped")
    assert fresh.limits.memory_mb == 64


# --- soft delete ---------------------------------------------------------------------------------


def test_deleted_site_leaves_the_list_and_keeps_its_row(cast):
    site = make_site(cast.org, name="Blog")
    make_domain(site, "blog.example.com")
    owner = client_for(cast.owner)
    assert owner.delete(site_url(cast.org, "blog")).status_code == 204
    assert owner.get(sites_url(cast.org)).json()["count"] == 0
    assert owner.get(site_url(cast.org, "blog")).status_code == 404
    site.refresh_from_db()
    assert site.deleted_at is not None
    assert site.observed_state == "removed"
    assert AuditLog.objects.filter(action="site.delete", target_id=str(site.pk)).count() == 1


def test_deleting_twice_is_404(cast):
    make_site(cast.org, name="Blog")
    owner = client_for(cast.owner)
    assert owner.delete(site_url(cast.org, "blog")).status_code == 204
    assert_error(owner.delete(site_url(cast.org, "blog")), 404, "not_found")


def test_slug_of_a_deleted_site_can_be_reused(cast):
    old = make_site(cast.org, name="Blog")
    owner = client_for(cast.owner)
    assert owner.delete(site_url(cast.org, "blog")).status_code == 204
    response = create(owner, cast.org, name="Blog")
    assert response.status_code == 201, response.content
    assert response.json()["slug"] == "blog"
    assert response.json()["id"] != str(old.pk)
    assert owner.get(site_url(cast.org, "blog")).json()["id"] == response.json()["id"]


@pytest.mark.parametrize(
    ("method", "part"),
    [
        ("get", "limits"),
        ("patch", "limits"),
        ("get", "domains"),
        ("post", "domains"),
        ("get", "env"),
        ("post", "env"),
        ("get", "containers"),
        ("post", "start"),
        ("post", "stop"),
        ("post", "restart"),
    ],
)
def test_nested_endpoints_of_a_deleted_site_are_404(cast, method, part):
    site = make_site(cast.org, name="Blog")
    make_env(site, "MODE", "prod")
    owner = client_for(cast.owner)
    assert owner.delete(site_url(cast.org, "blog")).status_code == 204
    response = getattr(owner, method)(site_url(cast.org, "blog", part), {}, format="json")
    assert_error(response, 404, "not_found")


# --- tenancy of nested endpoints and actions ------------------------------------------------------

NESTED = [
    ("get", ""),
    ("patch", ""),
    ("delete", ""),
    ("get", "limits"),
    ("patch", "limits"),
    ("get", "domains"),
    ("post", "domains"),
    ("get", "env"),
    ("post", "env"),
    ("get", "containers"),
    ("post", "start"),
    ("post", "stop"),
    ("post", "restart"),
]


@pytest.mark.parametrize("who", ["outsider", "other_owner"])
@pytest.mark.parametrize(("method", "part"), NESTED)
def test_outsider_gets_404_on_every_site_endpoint(cast, who, method, part):
    site = make_site(cast.org, name="Blog")
    client = client_for(getattr(cast, who))
    audit_rows = AuditLog.objects.count()
    data = {"memory_mb": 128, "hostname": "x.example.com", "key": "K", "value": "v"}
    response = getattr(client, method)(site_url(cast.org, "blog", part), data, format="json")
    assert_error(response, 404, "not_found")
    assert AuditLog.objects.count() == audit_rows
    fresh = Site.objects.get(pk=site.pk)
    assert fresh.deleted_at is None
    assert fresh.limits.memory_mb == 64
    assert not fresh.domains.exists()
    assert not fresh.env_vars.exists()


@pytest.mark.parametrize("part", ["domains", "env", "containers", "limits"])
def test_outsider_gets_404_on_nested_objects_of_another_org(cast, part):
    """The other organization's site `blog` is not reachable under its own slug from here."""
    make_site(cast.other_org, name="Blog")
    response = client_for(cast.owner).get(site_url(cast.other_org, "blog", part))
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_viewer_cannot_start_stop_or_restart(cast, action):
    site = make_site(cast.org, name="Blog")
    response = client_for(cast.viewer).post(site_url(cast.org, "blog", action))
    assert_error(response, 403, "permission_denied")
    site.refresh_from_db()
    assert site.desired_state == "stopped"
    assert not AuditLog.objects.filter(action=f"site.{action}").exists()


def test_start_on_an_unreachable_engine_is_202_pending_with_the_reason(cast, sent_tasks):
    site = make_site(cast.org, name="Blog")
    response = client_for(cast.member).post(site_url(cast.org, "blog", "start"))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["desired_state"] == "running"
    assert body["reconcile_status"] == "pending"
    assert "local" in body["reconcile_error"]
    site.refresh_from_db()
    assert site.desired_state == "running"
    assert site.reconciled_generation < site.generation
    assert not site.containers.exists()
    assert AuditLog.objects.filter(action="site.start").count() == 1
    site.host.refresh_from_db()
    assert site.host.status == HostStatus.OFFLINE
    assert AuditLog.objects.filter(action="host.offline", target_id=str(site.host.pk)).exists()
    assert ("reconcile_site", str(site.pk)) in sent_tasks  # a worker retries it


def test_stop_of_a_never_started_site_converges_without_the_engine(cast, sent_tasks):
    site = make_site(cast.org, name="Blog")
    response = client_for(cast.member).post(site_url(cast.org, "blog", "stop"))
    assert response.status_code == 200, response.content
    assert response.json()["observed_state"] == "stopped"
    assert response.json()["reconcile_status"] == "converged"
    site.host.refresh_from_db()
    assert site.host.status == HostStatus.ONLINE
    assert not sent_tasks


# --- list filters ---------------------------------------------------------------------------------


def test_list_filters_by_search_and_type(cast):
    make_site(cast.org, name="Blog")
    make_site(cast.org, name="Shop", image="example/shop:1")
    make_site(cast.org, name="Docs", site_type="static", image="")
    viewer = client_for(cast.viewer)

    def slugs(**params):
        response = viewer.get(sites_url(cast.org), params)
        assert response.status_code == 200, response.content
        return sorted(s["slug"] for s in response.json()["results"])

    assert slugs() == ["blog", "docs", "shop"]
    assert slugs(q="shop") == ["shop"]
    assert slugs(site_type="static") == ["docs"]
    by_name_desc = viewer.get(sites_url(cast.org), {"ordering": "-name"}).json()
    assert [s["name"] for s in by_name_desc["results"]] == ["Shop", "Docs", "Blog"]


def test_a_docker_site_built_from_its_repository_needs_no_image_and_runs_nothing_yet(
    cast, settings, sent_tasks
):
    settings.DEPLOY_ALLOW_FILE_REPOSITORIES = True
    ensure_host()
    response = client_for(cast.member).post(
        sites_url(cast.org),
        {"name": "App", "site_type": "docker", "repository_url": "file:///srv/app.git"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["image"] == ""
    assert (body["desired_state"], body["observed_state"]) == ("running", "stopped")
    assert body["reconcile_status"] == "converged"  # nothing to run until the first deploy
    assert not Site.objects.get(slug="app").containers.exists()


def test_a_docker_site_needs_an_image_or_a_repository(cast):
    ensure_host()
    response = client_for(cast.member).post(
        sites_url(cast.org), {"name": "App", "site_type": "docker"}, format="json"
    )
    assert "repository" in assert_field_errors(response, "image")["image"][0]


def test_the_site_url_is_its_name_on_its_hosts_proxy(cast):
    site = make_site(cast.org, name="Shop")
    client = client_for(cast.viewer)
    assert client.get(site_url(cast.org, "shop")).json()["url"] is None  # no proxy: no URL

    DockerHost.objects.filter(pk=site.host_id).update(
        proxy_admin="unix:///run/caddy/admin.sock", proxy_http_port=8080
    )
    assert client.get(site_url(cast.org, "shop")).json()["url"] == (
        "http://shop-acme.sites.localhost:8080/"
    )
    DockerHost.objects.filter(pk=site.host_id).update(proxy_http_port=80)
    [listed] = client.get(sites_url(cast.org)).json()["results"]
    assert listed["url"] == "http://shop-acme.sites.localhost/"


def test_sleep_settings_and_the_proxy_state_are_in_the_site_api(cast):
    make_site(cast.org, name="Shop")
    client = client_for(cast.member)
    response = client.patch(site_url(cast.org, "shop"), {"sleep_after_minutes": 15}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sleep_after_minutes"] == 15
    assert body["asleep_since"] is None and body["throttled_until"] is None
    for bad in (0, 10081, "soon"):
        refused = client.patch(
            site_url(cast.org, "shop"), {"sleep_after_minutes": bad}, format="json"
        )
        assert "sleep_after_minutes" in assert_field_errors(refused)
    assert (
        client.patch(
            site_url(cast.org, "shop"), {"sleep_after_minutes": None}, format="json"
        ).json()["sleep_after_minutes"]
        is None
    )
    # What the proxy enforces is the panel's to set, not the tenant's.
    client.patch(
        site_url(cast.org, "shop"), {"asleep_since": "2026-01-01T00:00:00Z"}, format="json"
    )
    assert Site.objects.get(slug="shop").asleep_since is None


def test_runtime_logs_without_a_container_or_with_its_engine_down(cast):
    site = the_site(cast.org)
    url = site_url(cast.org, part="logs")
    quiet = client_for(cast.viewer).get(url).json()
    assert quiet == {"container": None, "lines": [], "cursor": 0}
    assert client_for(cast.viewer).get(f"{url}?tail=0").status_code == 400
    assert client_for(cast.outsider).get(url).status_code == 404
    DockerHost.objects.filter(pk=site.host_id).update(endpoint="unix:///nonexistent/docker.sock")
    Container.objects.create(
        host_id=site.host_id, site=site, docker_id="c1", name="web-1", image="x",
        state="running", port=31000, created=timezone.now(),
    )  # fmt: skip
    down = client_for(cast.viewer).get(url)
    assert down.status_code == 503 and "unavailable" in down.json()["detail"]


def test_sites_carry_their_health(cast):
    site = the_site(cast.org)
    assert client_for(cast.viewer).get(site_url(cast.org)).json()["health"] is None
    SiteHealth.objects.create(
        site=site, organization=cast.org, status="healthy", last_response_time_ms=12.5
    )
    health = client_for(cast.viewer).get(site_url(cast.org)).json()["health"]
    assert health["status"] == "healthy" and health["last_response_time_ms"] == 12.5
