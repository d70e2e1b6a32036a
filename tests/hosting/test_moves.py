"""Moving a site (hosting/moves.py) without an engine: what a move request refuses, that
deployments wait for a move, where the move task is routed, and the old host's proxy
forwarding a moved site's visitors. Under load with real engines and Caddy:
tests/integration/test_proxy.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import AuditLog
from hosting import deployments, moves, proxy, services, workers
from hosting.models import Container, Deployment, DockerHost, PortForward, Site
from tests.hosting.factories import UNREACHABLE_ENDPOINT, ensure_host, make_site

pytestmark = pytest.mark.django_db
GiB = 2**30


def host(name: str, **fields) -> DockerHost:
    made = services.create_host(actor=None, name=name, endpoint=UNREACHABLE_ENDPOINT, **fields)
    DockerHost.objects.filter(pk=made.pk).update(memory_bytes=GiB, cpus=1)
    made.refresh_from_db()
    return made


@pytest.fixture
def site(cast):
    return make_site(cast.org, name="Shop", host=ensure_host())


def test_a_move_is_recorded_audited_and_sent_to_a_worker(
    site, cast, sent_tasks, django_capture_on_commit_callbacks
):
    target = host("web2")
    with django_capture_on_commit_callbacks(execute=True):
        moved = moves.request_move(site, target, actor=cast.owner)
    assert moved.moving_to == target and moved.host == site.host
    assert sent_tasks == [("move_site", str(site.pk))]
    row = AuditLog.objects.get(action="site.move")
    assert row.changes == {"from": "local", "to": "web2"}
    assert row.actor == cast.owner and row.organization == cast.org
    with pytest.raises(ValidationError, match="already moving"):
        moves.request_move(site, target, actor=cast.owner)
    # While it moves, deployments wait.
    Site.objects.filter(pk=site.pk).update(repository_url="https://example.test/shop.git")
    site.refresh_from_db()
    with pytest.raises(ValidationError, match="moving to another host"):
        deployments.request_deployment(site, actor=cast.owner, trigger="api")


@pytest.mark.parametrize(
    ("target_fields", "message"),
    [
        ({"draining": True}, "web2 is draining"),
        ({"labels": {"zone": "us"}}, "web2 lacks the labels {'zone': 'eu'}"),
        ({"status": "maintenance"}, "web2 is maintenance"),
    ],
)
def test_the_target_must_be_able_to_take_the_site(site, sent_tasks, target_fields, message):
    Site.objects.filter(pk=site.pk).update(required_labels={"zone": "eu"})
    site.refresh_from_db()
    target = host("web2", labels={"zone": "eu"})
    DockerHost.objects.filter(pk=target.pk).update(**target_fields)
    target.refresh_from_db()
    with pytest.raises(ValidationError, match=message):
        moves.request_move(site, target, actor=None)
    assert Site.objects.get(pk=site.pk).moving_to is None
    assert sent_tasks == []


def test_a_full_target_and_what_does_not_move_are_refused(site, cast, sent_tasks):
    small = host("small")
    DockerHost.objects.filter(pk=small.pk).update(memory_bytes=32 * 2**20)
    small.refresh_from_db()
    with pytest.raises(ValidationError, match="small has 32 MB free of 64"):
        moves.request_move(site, small, actor=None)
    target = host("web2")
    with pytest.raises(ValidationError, match="already runs on local"):
        moves.request_move(site, site.host, actor=None)
    Site.objects.filter(pk=site.pk).update(persistent_volume=True)
    with pytest.raises(ValidationError, match="/data volume"):
        moves.request_move(site, target, actor=None)
    Site.objects.filter(pk=site.pk).update(persistent_volume=False)
    PortForward.objects.create(
        organization=cast.org, site=site, host=site.host, container_port=5432, public_port=40001
    )
    with pytest.raises(ValidationError, match="port forwards"):
        moves.request_move(site, target, actor=None)
    PortForward.objects.all().delete()
    Deployment.objects.create(organization=cast.org, site=site, number=1, trigger="api")
    with pytest.raises(ValidationError, match="deployment is queued or running"):
        moves.request_move(site, target, actor=None)
    assert sent_tasks == []


def test_the_move_task_goes_to_the_new_hosts_worker(site, sent_tasks):
    target = host("web2")
    DockerHost.objects.filter(pk=target.pk).update(worker_heartbeat_at=timezone.now())
    moves.request_move(site, target, actor=None)
    assert workers.route("hosting.tasks.move_site", [str(site.pk)], {}, {}) == {
        "queue": "host.web2",
        "routing_key": "host.web2",
    }


def test_the_old_hosts_proxy_forwards_a_moved_sites_visitors_for_a_while(site, settings):
    old, new = site.host, host("web2", address="127.0.0.2")
    for made in (old, new):
        DockerHost.objects.filter(pk=made.pk).update(proxy_admin="http://127.0.0.1:2019")
    Site.objects.filter(pk=site.pk).update(
        host=new, previous_host=old, moved_at=timezone.now(),
        desired_state="running", observed_state="running",
    )  # fmt: skip
    Container.objects.create(
        host=old, site=site, docker_id="old", name="old", image="x", state="running",
        port=31000, created=timezone.now(), retired_at=timezone.now(),
    )  # fmt: skip
    Container.objects.create(
        host=new, site=site, docker_id="new", name="new", image="x", state="running",
        port=32000, created=timezone.now(),
    )  # fmt: skip

    def dial(on: DockerHost) -> list[str]:
        on.refresh_from_db()
        routes = proxy.render(on)["apps"]["http"]["servers"][proxy.SERVER]["routes"]
        mine = [r for r in routes if r.get("@id") == f"site-{site.pk}"]
        return [u["dial"] for r in mine for u in r["handle"][0].get("upstreams", [])]

    assert dial(new) == ["127.0.0.2:32000"]
    assert dial(old) == ["127.0.0.2:32000"]  # forwarded to the new host's container
    settings.MOVE_FORWARD_HOURS = 1
    Site.objects.filter(pk=site.pk).update(moved_at=timezone.now() - timedelta(hours=2))
    assert dial(old) == []  # after MOVE_FORWARD_HOURS: not routed there any more
    assert dial(new) == ["127.0.0.2:32000"]
