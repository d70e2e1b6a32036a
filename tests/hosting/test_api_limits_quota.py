"""Per-site limits (`.../sites/{site}/limits/`) and organization quotas (`.../quota/`)."""

from __future__ import annotations

import pytest

from accounts.models import Role
from audit.models import AuditLog
from hosting import services
from hosting.models import ResourceLimit, Site
from tests.api_mixin import SingletonEndpointMixin, assert_error, assert_field_errors
from tests.conftest import client_for
from tests.hosting.factories import ensure_host, make_site, quota_url, site_url, sites_url


def create(client, org, name, **limits):
    body = {"name": name, "image": "example/app:1", "desired_state": "stopped", "limits": limits}
    return client.post(sites_url(org), body, format="json")


def quota_errors(response) -> list[str]:
    return assert_field_errors(response)["quota"]


def limits_of(site: Site) -> ResourceLimit:
    return ResourceLimit.objects.get(site=site)


# --- limits ----------------------------------------------------------------------------------


def test_viewer_reads_limits(cast):
    make_site(cast.org, name="Blog", limits={"memory_mb": 96, "cpu_percent": 20})
    response = client_for(cast.viewer).get(site_url(cast.org, "blog", "limits"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["memory_mb"], body["cpu_percent"]) == (96, 20)
    assert {"disk_mb", "bandwidth_mb", "requests_per_minute", "max_processes"} <= set(body)


def test_admin_changes_limits_and_it_is_audited(cast):
    site = make_site(cast.org, name="Blog")
    response = client_for(cast.admin).patch(
        site_url(cast.org, "blog", "limits"), {"memory_mb": 256, "max_processes": 100}
    )
    assert response.status_code == 200, response.content
    assert (response.json()["memory_mb"], response.json()["max_processes"]) == (256, 100)
    limits = limits_of(site)
    assert (limits.memory_mb, limits.max_processes) == (256, 100)
    row = AuditLog.objects.get(action="site.limits_update")
    assert row.actor == cast.admin
    assert row.changes["after"] == {"memory_mb": 256, "max_processes": 100}
    assert row.changes["before"] == {"memory_mb": 64, "max_processes": 256}


def test_member_cannot_change_limits(cast):
    site = make_site(cast.org, name="Blog")
    response = client_for(cast.member).patch(
        site_url(cast.org, "blog", "limits"), {"memory_mb": 256}
    )
    assert_error(response, 403, "permission_denied")
    assert limits_of(site).memory_mb == 64


@pytest.mark.parametrize(
    "change",
    [{"memory_mb": 8}, {"cpu_percent": 0}, {"max_processes": 1}, {"memory_mb": "lots"}],
)
def test_invalid_limits_are_400(cast, change):
    site = make_site(cast.org, name="Blog")
    before = limits_of(site)
    response = client_for(cast.admin).patch(site_url(cast.org, "blog", "limits"), change)
    assert set(change) <= set(assert_field_errors(response))
    after = limits_of(site)
    assert (after.memory_mb, after.cpu_percent, after.max_processes) == (
        before.memory_mb,
        before.cpu_percent,
        before.max_processes,
    )


# --- quotas at creation ------------------------------------------------------------------------


def test_creating_past_max_sites_is_400_naming_the_quota(cast):
    ensure_host()
    services.update_quota(cast.org, actor=None, max_sites=2)
    member = client_for(cast.member)
    assert create(member, cast.org, "One", memory_mb=64).status_code == 201
    assert create(member, cast.org, "Two", memory_mb=64).status_code == 201

    response = create(member, cast.org, "Three", memory_mb=64)

    (message,) = quota_errors(response)
    assert "max_sites is 2; this would be 3" in message
    assert not Site.objects.filter(slug="three").exists()
    assert AuditLog.objects.filter(action="site.create").count() == 2


def test_creating_past_max_memory_says_by_how_much(cast):
    services.update_quota(cast.org, actor=None, max_memory_mb=1000)
    make_site(cast.org, name="Big", limits={"memory_mb": 600, "cpu_percent": 10})

    response = create(client_for(cast.member), cast.org, "Bigger", memory_mb=600, cpu_percent=10)

    (message,) = quota_errors(response)
    assert "max_memory_mb is 1000" in message
    assert "1200" in message
    assert "200 MB over" in message
    assert Site.objects.count() == 1


def test_creating_past_max_cpu_says_by_how_much(cast):
    services.update_quota(cast.org, actor=None, max_cpu_percent=100)
    make_site(cast.org, name="Busy", limits={"memory_mb": 64, "cpu_percent": 60})

    response = create(client_for(cast.member), cast.org, "Busier", memory_mb=64, cpu_percent=50)

    (message,) = quota_errors(response)
    assert "max_cpu_percent is 100" in message
    assert "110" in message
    assert "10 points over" in message
    assert Site.objects.count() == 1


def test_every_quota_passed_is_named(cast):
    services.update_quota(cast.org, actor=None, max_sites=1, max_memory_mb=100, max_cpu_percent=20)
    make_site(cast.org, name="One", limits={"memory_mb": 64, "cpu_percent": 10})

    response = create(client_for(cast.member), cast.org, "Two", memory_mb=64, cpu_percent=20)

    messages = " ".join(quota_errors(response))
    assert "max_sites" in messages
    assert "max_memory_mb" in messages
    assert "max_cpu_percent" in messages


def test_exactly_at_quota_is_allowed(cast):
    services.update_quota(cast.org, actor=None, max_sites=2, max_memory_mb=128, max_cpu_percent=20)
    make_site(cast.org, name="One", limits={"memory_mb": 64, "cpu_percent": 10})
    response = create(client_for(cast.member), cast.org, "Two", memory_mb=64, cpu_percent=10)
    assert response.status_code == 201, response.content


def test_deleted_sites_free_their_quota(cast):
    services.update_quota(cast.org, actor=None, max_sites=1)
    make_site(cast.org, name="One")
    owner = client_for(cast.owner)
    assert create(owner, cast.org, "Two", memory_mb=64).status_code == 400
    assert owner.delete(site_url(cast.org, "one")).status_code == 204
    assert create(owner, cast.org, "Two", memory_mb=64).status_code == 201


def test_quota_is_per_organization(cast):
    services.update_quota(cast.other_org, actor=None, max_sites=1)
    make_site(cast.other_org, name="Theirs")
    make_site(cast.org, name="Ours")
    response = create(client_for(cast.member), cast.org, "Second", memory_mb=64)
    assert response.status_code == 201, response.content


# --- quotas when resizing -------------------------------------------------------------------------


def test_raising_limits_past_quota_is_400_and_leaves_limits_unchanged(cast):
    services.update_quota(cast.org, actor=None, max_memory_mb=1000, max_cpu_percent=100)
    make_site(cast.org, name="Other", limits={"memory_mb": 500, "cpu_percent": 50})
    site = make_site(cast.org, name="Blog", limits={"memory_mb": 200, "cpu_percent": 20})

    response = client_for(cast.admin).patch(
        site_url(cast.org, "blog", "limits"), {"memory_mb": 600, "cpu_percent": 20}
    )

    (message,) = quota_errors(response)
    assert "max_memory_mb is 1000; this would use 1100 (100 MB over)" in message
    limits = limits_of(site)
    assert (limits.memory_mb, limits.cpu_percent) == (200, 20)
    assert not AuditLog.objects.filter(action="site.limits_update").exists()


def test_raising_cpu_past_quota_is_400(cast):
    services.update_quota(cast.org, actor=None, max_cpu_percent=100)
    site = make_site(cast.org, name="Blog", limits={"memory_mb": 64, "cpu_percent": 20})
    response = client_for(cast.admin).patch(
        site_url(cast.org, "blog", "limits"), {"cpu_percent": 150}
    )
    (message,) = quota_errors(response)
    assert "max_cpu_percent is 100; this would use 150 (50 points over)" in message
    assert limits_of(site).cpu_percent == 20


def test_resizing_counts_the_site_once(cast):
    """The site's own current limits are replaced, not added to the new ones."""
    services.update_quota(cast.org, actor=None, max_memory_mb=1000)
    site = make_site(cast.org, name="Blog", limits={"memory_mb": 600, "cpu_percent": 10})
    response = client_for(cast.admin).patch(
        site_url(cast.org, "blog", "limits"), {"memory_mb": 1000}
    )
    assert response.status_code == 200, response.content
    assert limits_of(site).memory_mb == 1000


# --- GET quota ------------------------------------------------------------------------------------


def test_quota_shows_limits_and_usage(cast):
    services.update_quota(cast.org, actor=None, max_sites=5, max_memory_mb=2048)
    make_site(cast.org, name="One", limits={"memory_mb": 128, "cpu_percent": 25})
    make_site(cast.org, name="Two", limits={"memory_mb": 256, "cpu_percent": 50})
    gone = make_site(cast.org, name="Gone", limits={"memory_mb": 512, "cpu_percent": 100})
    services.delete_site(gone, actor=None)
    make_site(cast.other_org, name="Theirs", limits={"memory_mb": 1024, "cpu_percent": 100})

    response = client_for(cast.viewer).get(quota_url(cast.org))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["max_sites"], body["max_memory_mb"]) == (5, 2048)
    # disk: the seed's default disk_mb (1024) of each live site
    assert body["usage"] == {
        "sites": 2,
        "memory_mb": 384,
        "cpu_percent": 75,
        "disk_mb": 2048,
        "port_forwards": 0,
    }


def test_quota_of_a_new_organization_uses_the_defaults(cast, settings):
    response = client_for(cast.owner).get(quota_url(cast.org))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["max_sites"] == settings.DEFAULT_QUOTA["max_sites"]
    assert body["max_disk_mb"] == settings.DEFAULT_QUOTA["max_disk_mb"]
    assert body["usage"] == {
        "sites": 0,
        "memory_mb": 0,
        "cpu_percent": 0,
        "disk_mb": 0,
        "port_forwards": 0,
    }


@pytest.mark.parametrize("who", ["outsider", "other_owner"])
def test_quota_of_another_organization_is_404(cast, who):
    assert_error(client_for(getattr(cast, who)).get(quota_url(cast.org)), 404, "not_found")


def test_quota_cannot_be_changed_through_the_api(cast):
    response = client_for(cast.owner).patch(quota_url(cast.org), {"max_sites": 1000})
    assert response.status_code == 405
    assert services.quota_for(cast.org).max_sites != 1000


def test_a_quota_is_made_with_its_organization_and_reading_it_writes_nothing(cast):
    from hosting.models import OrganizationQuota

    assert OrganizationQuota.objects.filter(organization=cast.org).exists()
    client = client_for(cast.viewer)
    before = AuditLog.objects.count(), OrganizationQuota.objects.count()
    response = client.get(quota_url(cast.org))
    assert response.status_code == 200
    assert (AuditLog.objects.count(), OrganizationQuota.objects.count()) == before


# --- the generic endpoint tests --------------------------------------------------------------


class TestLimitsApi(SingletonEndpointMixin):
    min_roles = {"read": Role.VIEWER, "write": Role.ADMIN}
    write_method = "patch"
    audit_action = "site.limits_update"
    max_read_queries = 5  # session, user, organization (+role), site, limits

    def make_site(self, cast):
        return make_site(cast.org, name="Limited")

    def url(self, org, site):
        return site_url(org, site.slug, "limits")

    def write_data(self, cast):
        return {"memory_mb": 128, "requests_per_minute": 600}

    def snapshot(self, cast, site):
        return ResourceLimit.objects.filter(site=site).values().first()


class TestQuotaApi(SingletonEndpointMixin):
    min_roles = {"read": Role.VIEWER}
    max_read_queries = 7  # session, user, organization (+role), quota, 3 sums of current use

    def url(self, org, site):
        return quota_url(org)


def test_disk_limits_count_against_the_disk_quota(cast):
    services.update_quota(cast.org, actor=None, max_disk_mb=3000)
    site = make_site(cast.org, name="One", limits={"memory_mb": 64, "disk_mb": 2000})
    response = client_for(cast.member).post(
        sites_url(cast.org),
        {"name": "Two", "image": "example/app:1", "limits": {"memory_mb": 64, "disk_mb": 1500}},
        format="json",
    )
    assert response.status_code == 400
    assert "max_disk_mb is 3000; this would use 3500 (500 MB over)" in str(response.json())
    response = client_for(cast.admin).patch(
        site_url(cast.org, site.slug, "limits"), {"disk_mb": 3001}, format="json"
    )
    assert response.status_code == 400
    assert "max_disk_mb is 3000" in str(response.json())
