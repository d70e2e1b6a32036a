"""The hosting admin: every write goes through a service and is audited; a Docker engine that
cannot be reached is an error message, never a server error; secret values never show."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditLog
from hosting import docker as engine
from hosting import reconcile, services
from hosting.models import (
    Container,
    DockerHost,
    Domain,
    EnvironmentVariable,
    HostStatus,
    ObservedState,
    OrganizationQuota,
    ResourceLimit,
    Site,
    SiteTemplate,
)
from tests.factories import make_org, make_user

UNREACHABLE = "unix:///nonexistent.sock"
SECRET_PLAIN = "hunter2-plain-text-secret-value"


class _FormInputs(HTMLParser):
    """What a browser would submit from a page: inputs, ticked boxes, options, text areas."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "checkbox"):
            self.data[name] = attrs.get("value") or ""
        elif tag == "input" and name and "checked" in attrs:
            self.data[name] = "on"
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.data[self._select] = attrs.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_data(client: Client, page_url: str, **changes) -> dict[str, str]:
    parser = _FormInputs()
    response = client.get(page_url)
    assert response.status_code == 200
    parser.feed(response.content.decode())
    return {**parser.data, **{name: str(value) for name, value in changes.items()}}


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def audits(action: str):
    return AuditLog.objects.filter(action=action).order_by("timestamp")


@pytest.fixture
def org(db):
    return make_org(make_user("owner@example.test"), "Acme", slug="acme")


@pytest.fixture
def host(db) -> DockerHost:
    """An online host row whose engine cannot be reached: any Docker call fails."""
    return services.create_host(actor=None, name="dead", endpoint=UNREACHABLE)


@pytest.fixture
def site(org, host) -> Site:
    """A stopped site: creating it makes no Docker call."""
    return services.create_site(
        org, actor=None, name="x", site_type="static", desired_state="stopped"
    )


@pytest.fixture
def docker_calls(monkeypatch) -> list:
    """Records every attempt to reach an engine (the attempt still fails as it would)."""
    calls = []
    real_client = engine.client

    def spy(host):
        calls.append(host.name)
        return real_client(host)

    monkeypatch.setattr(engine, "client", spy)
    return calls


def give_container(site: Site, state: str = ObservedState.RUNNING) -> Container:
    return Container.objects.create(
        host=site.host,
        site=site,
        docker_id="f" * 64,
        name=f"hp-{site.organization.slug}-{site.slug}",
        image="busybox:stable",
        state=state,
        status="Up",
    )


# --- every page loads ------------------------------------------------------------------------


@pytest.fixture
def everything(org, host, site):
    give_container(site, state="exited")
    services.add_domain(site, actor=None, hostname="shop.example.com")
    services.set_env(site, actor=None, key="PLAIN", value="visible")
    services.set_env(site, actor=None, key="DB_PASSWORD", value=SECRET_PLAIN, is_secret=True)
    services.save_template(
        SiteTemplate(name="Static", slug="static", site_type="static"), actor=None
    )
    return site


@pytest.mark.parametrize(
    ("model", "has_add_page"),
    [
        (DockerHost, True),
        (Site, False),
        (ResourceLimit, False),
        (OrganizationQuota, True),
        (SiteTemplate, True),
        (Domain, False),
        (EnvironmentVariable, False),
        (Container, False),
    ],
)
def test_changelist_change_and_add_pages(everything, staff_client, model, has_add_page):
    name = f"hosting_{model._meta.model_name}"
    response = staff_client.get(url(f"{name}_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == model.objects.count() >= 1

    for obj in model.objects.all():
        assert staff_client.get(url(f"{name}_change", obj.pk)).status_code == 200
        assert staff_client.get(url(f"{name}_history", obj.pk)).status_code == 200

    assert staff_client.get(url(f"{name}_add")).status_code == (200 if has_add_page else 403)


@pytest.mark.parametrize(
    ("model", "query"),
    [
        ("dockerhost", "nonexistent.sock"),
        ("site", "acme"),
        ("resourcelimit", "acme"),
        ("organizationquota", "acme"),
        ("sitetemplate", "static"),
        ("domain", "shop.example"),
        ("environmentvariable", "DB_PASS"),
        ("container", "hp-acme"),
    ],
)
def test_search(everything, staff_client, model, query):
    response = staff_client.get(url(f"hosting_{model}_changelist"), {"q": query})
    assert response.context["cl"].result_count == 1
    response = staff_client.get(url(f"hosting_{model}_changelist"), {"q": "no-such-thing"})
    assert response.context["cl"].result_count == 0


def test_site_filters(org, host, site, staff_client):
    gone = services.create_site(
        org, actor=None, name="gone", site_type="static", desired_state="stopped"
    )
    services.delete_site(gone, actor=None)
    reconcile.reconcile_site(gone.pk)
    changelist = url("hosting_site_changelist")

    def slugs(**params):
        return [s.slug for s in staff_client.get(changelist, params).context["cl"].result_list]

    assert slugs(deleted="no") == ["x"]
    assert slugs(deleted="yes") == ["gone"]
    assert slugs(observed_state__exact="removed") == ["gone"]
    assert slugs(host__id__exact=str(host.pk)) == ["gone", "x"]
    assert slugs(site_type__exact="docker") == []


def test_host_list_shows_memory_and_alive_site_count(org, host, site, staff_client):
    DockerHost.objects.filter(pk=host.pk).update(memory_bytes=2 * 1024**3, cpus=4)
    gone = services.create_site(
        org, actor=None, name="gone", site_type="static", desired_state="stopped"
    )
    services.delete_site(gone, actor=None)

    response = staff_client.get(url("hosting_dockerhost_changelist"))
    html = response.content.decode()
    assert '<td class="field-site_count">1</td>' in html
    assert '<td class="field-memory">2.0\xa0GB</td>' in html


@pytest.mark.parametrize("model", ["dockerhost", "site", "resourcelimit", "domain", "container"])
def test_changelist_queries_do_not_grow_with_rows(org, staff_client, model):
    def grow(n):
        for _ in range(n):
            host = services.create_host(
                actor=None, name=f"h{DockerHost.objects.count()}", endpoint=UNREACHABLE
            )
            site = services.create_site(
                org,
                actor=None,
                name=f"s{Site.objects.count()}",
                site_type="static",
                desired_state="stopped",
                host=host,
            )
            give_container(site)
            services.add_domain(site, actor=None, hostname=f"{site.slug}.example.com")

    grow(1)
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get(url(f"hosting_{model}_changelist")).status_code == 200
    grow(4)
    with CaptureQueriesContext(connection) as many:
        assert staff_client.get(url(f"hosting_{model}_changelist")).status_code == 200
    assert len(many) == len(few)


# --- hosts ---------------------------------------------------------------------------------


def test_adding_a_host_goes_through_the_service(staff, staff_client):
    response = staff_client.post(
        url("hosting_dockerhost_add"),
        {
            "name": "edge-1",
            "endpoint": "tcp://10.0.0.5:2376",
            "status": "maintenance",
            "network_mode": "bridge",
            "labels": '{"zone": "a"}',
            "address": "10.0.0.5",
            "public_address": "203.0.113.5",
            "tls_ca_cert": "/etc/hostpanel/ca.pem",
            "tls_client_cert": "/etc/hostpanel/cert.pem",
            "tls_client_key": "/etc/hostpanel/key.pem",
            "proxy_admin": "unix:///run/caddy/admin.sock",
            "proxy_listen": "",
            "proxy_http_port": "8080",
            "proxy_https_port": "8443",
        },
        follow=True,
    )

    assert response.status_code == 200
    host = DockerHost.objects.get(name="edge-1")
    assert (host.endpoint, host.status, host.labels) == (
        "tcp://10.0.0.5:2376",
        "maintenance",
        {"zone": "a"},
    )
    assert (host.proxy_admin, host.proxy_listen) == ("unix:///run/caddy/admin.sock", None)
    assert (host.address, host.public_address) == ("10.0.0.5", "203.0.113.5")
    [entry] = audits("host.create")
    assert entry.actor == staff
    assert entry.target_id == str(host.pk)
    assert entry.changes["after"]["endpoint"] == "tcp://10.0.0.5:2376"
    assert response.redirect_chain[-1][0] == url("hosting_dockerhost_changelist")


def test_invalid_host_endpoint_is_a_form_error(staff_client):
    response = staff_client.post(
        url("hosting_dockerhost_add"),
        {"name": "bad", "endpoint": "http://nope", "status": "online", "network_mode": "none"},
    )
    assert response.status_code == 200
    assert "endpoint" in response.context["adminform"].form.errors
    assert not DockerHost.objects.exists()
    assert not audits("host.create").exists()


def test_changing_a_host_is_audited(host, staff, staff_client):
    page = url("hosting_dockerhost_change", host.pk)
    response = staff_client.post(page, form_data(staff_client, page, status="maintenance"))

    assert response.status_code == 302
    host.refresh_from_db()
    assert host.status == HostStatus.MAINTENANCE
    [entry] = audits("host.update")
    assert entry.actor == staff
    assert entry.changes == {"before": {"status": "online"}, "after": {"status": "maintenance"}}


def test_host_cannot_be_deleted(host, site, staff_client):
    assert staff_client.get(url("hosting_dockerhost_delete", host.pk)).status_code == 403
    response = staff_client.get(url("hosting_dockerhost_changelist"))
    assert "delete_selected" not in response.content.decode()
    assert DockerHost.objects.filter(pk=host.pk).exists()


def test_ping_of_an_unreachable_host_marks_it_offline(host, staff, staff_client):
    response = staff_client.post(
        url("hosting_dockerhost_changelist"),
        {"action": "ping_hosts", "_selected_action": [str(host.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    host.refresh_from_db()
    assert host.status == HostStatus.OFFLINE
    assert host.last_error
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert text.startswith("dead: offline")
    assert host.last_error[:50] in text
    [entry] = audits("host.offline")
    assert entry.actor == staff


def test_ping_of_a_reachable_host_reports_it_online(host, staff, staff_client, monkeypatch):
    DockerHost.objects.filter(pk=host.pk).update(status=HostStatus.OFFLINE, last_error="down")
    info = engine.EngineInfo(
        version="27.1.0",
        cpus=8,
        memory_bytes=16 * 1024**3,
        storage_driver="overlay2",
        supports_disk_quota=False,
    )
    monkeypatch.setattr(engine, "ping", lambda h: info)

    response = staff_client.post(
        url("hosting_dockerhost_changelist"),
        {"action": "ping_hosts", "_selected_action": [str(host.pk)]},
        follow=True,
    )

    assert messages_of(response) == [("success", "dead: online, Docker 27.1.0")]
    host.refresh_from_db()
    assert (host.status, host.cpus, host.last_error) == (HostStatus.ONLINE, 8, "")
    assert audits("host.online").get().actor == staff


# --- sites ---------------------------------------------------------------------------------


def site_state(site: Site) -> tuple:
    site = Site.objects.get(pk=site.pk)
    return (
        site.desired_state,
        site.observed_state,
        site.deleted_at,
        site.needs_restart,
        list(site.containers.values_list("docker_id", flat=True)),
        list(site.domains.values_list("hostname", flat=True)),
    )


@pytest.mark.parametrize(
    ("action", "audit_action"),
    [
        ("start_sites", "site.start"),
        ("stop_sites", "site.stop"),
        ("restart_sites", "site.restart"),
        ("delete_sites", "site.delete"),
    ],
)
def test_site_action_on_an_unreachable_host_is_recorded_and_left_pending(
    host, site, staff_client, docker_calls, action, audit_action
):
    give_container(site)
    services.add_domain(site, actor=None, hostname="shop.example.com")

    response = staff_client.post(
        url("hosting_site_changelist"),
        {"action": action, "_selected_action": [str(site.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert docker_calls  # the reconciler did try the engine
    texts = {text.split(":")[0]: level for level, text in messages_of(response)}
    assert texts["acme/x"] == "warning"
    [warning] = [t for level, t in messages_of(response) if level == "warning"]
    assert "pending: Docker host dead is unavailable" in warning
    site.refresh_from_db()
    assert site.reconcile_status == "pending"
    assert audits(audit_action).count() == 1
    assert site.containers.exists()  # nothing removed while the engine is away
    host.refresh_from_db()
    assert host.status == HostStatus.OFFLINE


def test_site_action_refused_by_the_service_is_an_error_message(org, host, site, staff_client):
    services.delete_site(site, actor=None)
    response = staff_client.post(
        url("hosting_site_changelist"),
        {"action": "start_sites", "_selected_action": [str(site.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert messages_of(response) == [("error", "acme/x: This site has been deleted.")]


def test_site_action_reports_successes_and_failures_per_site(
    org, host, site, staff, staff_client, docker_calls
):
    # No container yet: stopping it needs no engine, so it converges; the other one waits.
    other = services.create_site(
        org, actor=None, name="y", site_type="static", desired_state="stopped"
    )
    give_container(other)

    response = staff_client.post(
        url("hosting_site_changelist"),
        {"action": "stop_sites", "_selected_action": [str(site.pk), str(other.pk)]},
        follow=True,
    )

    assert sorted(messages_of(response)) == [
        ("success", "Stopped 2 site(s)."),
        (
            "warning",
            f"acme/y: pending: Docker host dead is unavailable: "
            f"{DockerHost.objects.get().last_error} (recorded; the engine follows when it "
            "answers)",
        ),
    ]
    entries = audits("site.stop")
    assert {(e.actor, e.target_id) for e in entries} == {
        (staff, str(site.pk)),
        (staff, str(other.pk)),
    }
    assert Site.objects.get(pk=site.pk).observed_state == ObservedState.STOPPED
    assert Site.objects.get(pk=site.pk).reconcile_status == "converged"
    assert Site.objects.get(pk=other.pk).reconcile_status == "pending"


def test_site_is_read_only_in_admin(site, staff_client):
    page = url("hosting_site_change", site.pk)
    response = staff_client.get(page)
    assert response.context["has_change_permission"] is False
    response = staff_client.post(page, {"name": "renamed"})
    assert response.status_code == 403
    assert Site.objects.get(pk=site.pk).name == "x"
    assert staff_client.get(url("hosting_site_delete", site.pk)).status_code == 403


# --- secrets -------------------------------------------------------------------------------


def test_secret_values_never_appear_in_admin_html(everything, staff_client):
    secret = EnvironmentVariable.objects.get(key="DB_PASSWORD")
    ciphertext = secret.value
    assert ciphertext and ciphertext != SECRET_PLAIN
    site = everything

    pages = [
        url("hosting_site_change", site.pk),
        url("hosting_site_changelist"),
        url("hosting_environmentvariable_changelist"),
        url("hosting_environmentvariable_change", secret.pk),
        url("hosting_environmentvariable_history", secret.pk),
        url("audit_auditlog_changelist"),
        *[url("audit_auditlog_change", e.pk) for e in AuditLog.objects.filter(action="env.set")],
    ]
    for page in pages:
        response = staff_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert SECRET_PLAIN not in html, page
        assert ciphertext not in html, page
        # Nor a piece of it: Fernet tokens share a prefix, so compare the random part.
        assert ciphertext[20:60] not in html, page

    # The pages did render the variable, by its key only.
    for page in (pages[0], pages[2], pages[3]):
        assert "DB_PASSWORD" in staff_client.get(page).content.decode(), page


def test_plain_values_are_not_shown_either(everything, staff_client):
    var = EnvironmentVariable.objects.get(key="PLAIN")
    for page in (
        url("hosting_site_change", everything.pk),
        url("hosting_environmentvariable_change", var.pk),
    ):
        html = staff_client.get(page).content.decode()
        assert "PLAIN" in html
        assert "visible" not in html


def test_environment_variables_cannot_be_changed_in_admin(everything, staff_client):
    var = EnvironmentVariable.objects.get(key="PLAIN")
    page = url("hosting_environmentvariable_change", var.pk)
    assert staff_client.post(page, {"key": "PLAIN", "value": "x"}).status_code == 403
    assert staff_client.get(url("hosting_environmentvariable_delete", var.pk)).status_code == 403
    assert EnvironmentVariable.objects.get(pk=var.pk).value == "visible"


# --- quotas ----------------------------------------------------------------------------------


def test_changing_a_quota_goes_through_the_service(org, site, staff, staff_client):
    quota = OrganizationQuota.objects.get(organization=org)
    page = url("hosting_organizationquota_change", quota.pk)
    data = form_data(staff_client, page, max_sites=3, over_limit_policy="stop")

    response = staff_client.post(page, data, follow=True)

    assert response.status_code == 200
    assert [level for level, _ in messages_of(response)] == ["success"]
    quota.refresh_from_db()
    assert (quota.max_sites, quota.over_limit_policy) == (3, "stop")
    [entry] = audits("quota.update")
    assert entry.actor == staff
    assert entry.organization == org
    assert entry.changes == {
        "before": {"max_sites": 10, "over_limit_policy": "notify"},
        "after": {"max_sites": 3, "over_limit_policy": "stop"},
    }


def test_every_organization_has_its_quota_so_the_add_page_offers_none(org, staff_client):
    other = make_org(make_user("boss@example.test"), "Initech", slug="initech")
    response = staff_client.get(url("hosting_organizationquota_add"))
    choices = list(response.context["adminform"].form.fields["organization"].queryset)
    assert other not in choices and org not in choices
    assert OrganizationQuota.objects.filter(organization=other).exists()


# --- templates -------------------------------------------------------------------------------


def template_post(**changes):
    return {
        "name": "Static site",
        "slug": "static-site",
        "description": "",
        "site_type": "static",
        "image": "",
        "build_command": "",
        "start_command": "",
        "internal_port": "8080",
        "health_check_path": "/",
        "default_limits": '{"memory_mb": 128}',
        "env_keys": '["GREETING"]',
        "is_active": "on",
        **changes,
    }


def test_adding_a_template_goes_through_the_service(staff, staff_client):
    response = staff_client.post(url("hosting_sitetemplate_add"), template_post(), follow=True)

    assert response.status_code == 200
    template = SiteTemplate.objects.get(slug="static-site")
    assert template.default_limits == {"memory_mb": 128}
    [entry] = audits("template.create")
    assert entry.actor == staff
    assert entry.changes["after"]["default_limits"] == {"memory_mb": 128}

    page = url("hosting_sitetemplate_change", template.pk)
    staff_client.post(page, form_data(staff_client, page, image="busybox:stable"))
    [entry] = audits("template.update")
    assert entry.changes == {"before": {"image": ""}, "after": {"image": "busybox:stable"}}


def test_template_refused_by_the_service_is_an_error_not_a_save(staff_client):
    response = staff_client.post(
        url("hosting_sitetemplate_add"),
        template_post(default_limits='{"gpus": 2}'),
        follow=True,
    )

    assert response.status_code == 200
    assert messages_of(response) == [("error", "Unknown limit(s): gpus.")]
    assert not SiteTemplate.objects.exists()
    assert not audits("template.create").exists()


# --- limits ----------------------------------------------------------------------------------


def test_changing_limits_of_a_stopped_site_is_audited_without_docker(
    site, staff, staff_client, docker_calls
):
    limits = site.limits
    page = url("hosting_resourcelimit_change", limits.pk)
    data = form_data(staff_client, page, memory_mb=256, max_processes=64)

    response = staff_client.post(page, data, follow=True)

    assert response.status_code == 200
    assert [level for level, _ in messages_of(response)] == ["success"]
    limits.refresh_from_db()
    assert (limits.memory_mb, limits.max_processes) == (256, 64)
    [entry] = audits("site.limits_update")
    assert (entry.actor, entry.target_id) == (staff, str(site.pk))
    assert entry.changes == {
        "before": {"memory_mb": 512, "max_processes": 256},
        "after": {"memory_mb": 256, "max_processes": 64},
    }
    assert docker_calls == []


def test_limits_past_the_quota_are_an_error_not_a_save(org, site, staff_client):
    OrganizationQuota.objects.filter(organization=org).update(max_memory_mb=600)
    page = url("hosting_resourcelimit_change", site.limits.pk)

    response = staff_client.post(page, form_data(staff_client, page, memory_mb=700), follow=True)

    assert response.status_code == 200
    [(level, text)] = messages_of(response)
    assert level == "error"
    assert "max_memory_mb is 600" in text
    assert ResourceLimit.objects.get(pk=site.limits.pk).memory_mb == 512
    assert not audits("site.limits_update").exists()


def test_limits_of_a_running_site_on_an_unreachable_host(
    host, site, staff, staff_client, sent_tasks, docker_calls, django_capture_on_commit_callbacks
):
    Site.objects.filter(pk=site.pk).update(observed_state=ObservedState.RUNNING)
    give_container(site)
    page = url("hosting_resourcelimit_change", site.limits.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            page, form_data(staff_client, page, memory_mb=256), follow=True
        )

    assert response.status_code == 200
    assert not docker_calls  # the form's transaction never waits for an engine
    assert ResourceLimit.objects.get(pk=site.limits.pk).memory_mb == 256
    assert audits("site.limits_update").get().actor == staff
    assert ("reconcile_site", str(site.pk)) in sent_tasks  # sent after the commit
    site.refresh_from_db()
    assert site.reconcile_status == "pending"


def test_limits_cannot_be_added_or_deleted(site, staff_client):
    assert staff_client.get(url("hosting_resourcelimit_add")).status_code == 403
    assert staff_client.get(url("hosting_resourcelimit_delete", site.limits.pk)).status_code == 403


# --- domains ---------------------------------------------------------------------------------


def test_domain_flags_change_and_removal_go_through_services(site, staff, staff_client):
    domain = services.add_domain(site, actor=None, hostname="shop.example.com")
    page = url("hosting_domain_change", domain.pk)

    staff_client.post(page, form_data(staff_client, page, is_cloudflare="on"))
    [entry] = audits("domain.update")
    assert entry.actor == staff
    assert entry.changes == {"before": {"is_cloudflare": False}, "after": {"is_cloudflare": True}}

    data = form_data(staff_client, page)
    del data["is_primary"]  # unticking the only primary domain: the service refuses
    response = staff_client.post(page, data, follow=True)
    assert messages_of(response) == [
        ("error", "Make another domain primary instead; a site keeps one.")
    ]
    assert Domain.objects.get(pk=domain.pk).is_primary

    response = staff_client.post(url("hosting_domain_delete", domain.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Domain.objects.exists()
    assert audits("domain.remove").get().actor == staff


def test_site_page_shows_a_pending_change_with_the_engines_reason(site, staff_client):
    Site.objects.filter(pk=site.pk).update(
        reconcile_status="pending", reconcile_error="Docker host dead is unavailable: refused"
    )
    listing = staff_client.get(url("hosting_site_changelist")).content.decode()
    assert '<td class="field-reconcile_status">Pending</td>' in listing
    page = staff_client.get(url("hosting_site_change", site.pk)).content.decode()
    assert "Docker host dead is unavailable: refused" in page


def test_moving_sites_asks_for_the_host_then_requests_each_move(
    org, host, site, staff_client, sent_tasks, django_capture_on_commit_callbacks
):
    target = services.create_host(actor=None, name="web2", endpoint=UNREACHABLE)
    services.create_host(actor=None, name="drained", endpoint=UNREACHABLE, draining=True)
    chosen = {"action": "move_sites", "_selected_action": [str(site.pk)]}
    page = staff_client.post(url("hosting_site_changelist"), chosen)
    assert page.status_code == 200
    body = page.content.decode()
    assert (
        "acme/x" in body and "web2" in body and "drained" not in body
    )  # only hosts that take sites

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            url("hosting_site_changelist"), {**chosen, "target_host": str(target.pk)}, follow=True
        )
    assert messages_of(response) == [
        ("success", "Moving 1 site(s) to web2; a worker carries it out.")
    ]
    site.refresh_from_db()
    assert site.moving_to == target
    assert sent_tasks == [("move_site", str(site.pk))]
    assert audits("site.move").get().actor.is_staff

    response = staff_client.post(
        url("hosting_site_changelist"), {**chosen, "target_host": str(host.pk)}, follow=True
    )
    assert messages_of(response) == [("error", "acme/x: x is already moving.")]
    response = staff_client.post(
        url("hosting_site_changelist"), {**chosen, "target_host": "not-a-host"}, follow=True
    )
    assert messages_of(response) == [("error", "That host cannot take sites.")]
