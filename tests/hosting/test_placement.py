"""Placement: free capacity (limits reserved against the host's size, over-commit factors),
labels a site requires, draining hosts."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hosting import placement, services
from hosting.models import DockerHost, HostStatus, Site
from tests.conftest import client_for
from tests.hosting.factories import UNREACHABLE_ENDPOINT, ensure_host, make_site, sites_url

pytestmark = pytest.mark.django_db
GiB = 2**30


def host(name: str, *, memory_gib: float = 1, cpus: int = 1, **fields) -> DockerHost:
    made = services.create_host(actor=None, name=name, endpoint=UNREACHABLE_ENDPOINT, **fields)
    DockerHost.objects.filter(pk=made.pk).update(memory_bytes=int(memory_gib * GiB), cpus=cpus)
    made.refresh_from_db()
    return made


@pytest.fixture
def roomy_quota(cast):
    # make_site's default host stays out of the way: in maintenance, nothing goes there
    DockerHost.objects.filter(pk=ensure_host().pk).update(status=HostStatus.MAINTENANCE)
    services.update_quota(cast.org, actor=None, max_sites=50, max_memory_mb=10**6,
                          max_cpu_percent=10**6, max_disk_mb=10**9)  # fmt: skip


def test_the_host_with_most_free_memory_that_holds_the_limits_is_chosen(
    cast, roomy_quota, settings
):
    settings.PLACEMENT_CPU_OVERCOMMIT = 1.0
    small = host("small", memory_gib=1, cpus=1)
    big = host("big", memory_gib=2, cpus=1)
    assert placement.choose_host(512, 50) == big
    make_site(cast.org, name="A", host=big, limits={"memory_mb": 1536, "cpu_percent": 10})
    assert placement.choose_host(512, 50) == small  # big has 512 MB left, small 1024
    make_site(cast.org, name="B", host=small, limits={"memory_mb": 900, "cpu_percent": 90})
    with pytest.raises(services.NoHostAvailable) as refused:
        placement.choose_host(600, 50)
    assert "big has 512 MB free of 600" in str(refused.value)
    assert "small has 124 MB free of 600" in str(refused.value)
    # CPU counts too: big has 90 % free, small 10 %
    with pytest.raises(services.NoHostAvailable, match="big has 90 % CPU free of 95"):
        placement.choose_host(100, 95)
    settings.PLACEMENT_CPU_OVERCOMMIT = 2.0
    assert placement.choose_host(100, 95) == big


def test_deleted_sites_reserve_nothing_and_memory_over_commit_stretches(
    cast, roomy_quota, settings
):
    only = host("only", memory_gib=1, cpus=4)
    gone = make_site(cast.org, name="Gone", host=only, limits={"memory_mb": 1000})
    with pytest.raises(services.NoHostAvailable):
        placement.choose_host(100)
    services.delete_site(gone, actor=None)
    assert placement.choose_host(100) == only
    make_site(cast.org, name="Full", host=only, limits={"memory_mb": 1000})
    settings.PLACEMENT_MEMORY_OVERCOMMIT = 1.5
    assert placement.choose_host(500) == only


def test_required_labels_and_draining_hosts(cast, roomy_quota):
    eu = host("eu-1", memory_gib=1, labels={"zone": "eu", "disk": "ssd"})
    us = host("us-1", memory_gib=4, labels={"zone": "us"})
    assert placement.choose_host(64, labels={"zone": "eu"}) == eu
    assert placement.choose_host(64) == us
    with pytest.raises(services.NoHostAvailable, match=r"us-1 lacks the labels \{'zone': 'ap'\}"):
        placement.choose_host(64, labels={"zone": "ap"})

    services.update_host(eu, actor=None, draining=True)
    with pytest.raises(services.NoHostAvailable, match="eu-1 is draining"):
        placement.choose_host(64, labels={"zone": "eu"})
    services.update_host(us, actor=None, status=HostStatus.MAINTENANCE)
    with pytest.raises(services.NoHostAvailable, match="us-1 is maintenance"):
        placement.choose_host(64)


def test_a_site_created_through_the_api_goes_where_its_labels_say(cast, roomy_quota):
    host("eu-1", memory_gib=1, labels={"zone": "eu"})
    host("us-1", memory_gib=4, labels={"zone": "us"})
    body = {"name": "Shop", "image": "example/app:1", "desired_state": "stopped",
            "required_labels": {"zone": "eu"}, "limits": {"memory_mb": 64}}  # fmt: skip
    response = client_for(cast.member).post(sites_url(cast.org), body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["host"] == "eu-1"
    assert response.json()["required_labels"] == {"zone": "eu"}
    bad = client_for(cast.member).post(
        sites_url(cast.org), {**body, "name": "Bad", "required_labels": {"zone": 1}}, format="json"
    )
    assert bad.status_code == 400 and "required_labels" in bad.json()["fields"]
    changed = client_for(cast.admin).patch(
        f"{sites_url(cast.org)}shop/", {"required_labels": {"zone": "us"}}, format="json"
    )
    assert changed.status_code == 400  # placement is at creation; moving is another step


def test_the_admin_drains_a_host_and_lists_what_it_still_runs(cast, roomy_quota, staff_client):
    edge = host("edge", memory_gib=2)
    site = make_site(cast.org, name="Left", host=edge)
    response = staff_client.post(
        reverse("admin:hosting_dockerhost_changelist"),
        {"action": "drain_hosts", "_selected_action": [edge.pk]},
        follow=True,
    )
    assert "Draining 1 host(s)" in response.content.decode()
    edge.refresh_from_db()
    assert edge.draining
    page = staff_client.get(reverse("admin:hosting_dockerhost_change", args=[edge.pk]))
    assert str(site) in page.content.decode()
    assert Site.objects.get(pk=site.pk).host == edge  # draining moves nothing by itself
