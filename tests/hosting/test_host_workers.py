"""A worker per host (hosting/workers.py): the router sends a host's work to its queue while
its worker beats and to the central queue otherwise; the heartbeat and sign-off; a host
worker's engine calls go to its local endpoint. Real processes: tests/integration/
test_host_workers.py."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from hosting import docker as engine
from hosting import services, workers
from hosting.models import Container, Deployment, DockerHost, Site
from tests.hosting.factories import SSH_HOST_KEY, UNREACHABLE_ENDPOINT, make_site

pytestmark = pytest.mark.django_db


def host(name: str) -> DockerHost:
    return services.create_host(actor=None, name=name, endpoint=UNREACHABLE_ENDPOINT)


def beating(made: DockerHost, seconds_ago: float = 0) -> DockerHost:
    DockerHost.objects.filter(pk=made.pk).update(
        worker_name=f"host-{made.name}@box",
        worker_heartbeat_at=timezone.now() - timedelta(seconds=seconds_ago),
    )
    made.refresh_from_db()
    return made


def routed(task: str, *args) -> str | None:
    route = workers.route(task, list(args), {}, {})
    return route["queue"] if route else None


def test_a_hosts_work_goes_to_its_queue_only_while_its_worker_beats(settings):
    settings.HOST_WORKER_TIMEOUT_SECONDS = 45
    web1 = host("web1")
    assert routed("hosting.tasks.sync_host", str(web1.pk)) is None  # never had a worker
    beating(web1)
    for task in (
        "hosting.tasks.sync_host",
        "hosting.tasks.probe_host",
        "hosting.tasks.sync_proxy",
        "monitoring.tasks.collect_host_usage",
        "monitoring.tasks.collect_host_traffic",
        "monitoring.tasks.measure_host_disk",
    ):
        assert routed(task, str(web1.pk)) == "host.web1", task
    beating(web1, seconds_ago=46)  # stopped beating: central again
    assert routed("hosting.tasks.sync_host", str(web1.pk)) is None
    beating(web1, seconds_ago=44)
    assert routed("hosting.tasks.sync_host", str(web1.pk)) == "host.web1"


def test_site_deployment_and_container_work_follows_the_sites_host(cast):
    web1, web2 = beating(host("web1")), host("web2")
    site = make_site(cast.org, name="Blog", host=web1)
    other = make_site(cast.org, name="Shop", host=web2)
    deployment = Deployment.objects.create(
        organization=cast.org, site=site, number=1, trigger="manual"
    )
    container = Container.objects.create(
        host=web1, site=site, docker_id="a" * 64, name="c", image="i", state="running"
    )
    assert routed("hosting.tasks.reconcile_site", str(site.pk)) == "host.web1"
    assert routed("hosting.tasks.restore_site", str(site.pk)) == "host.web1"
    assert routed("hosting.tasks.run_deployment", str(deployment.pk)) == "host.web1"
    assert routed("hosting.tasks.retire_containers", [str(container.pk)]) == "host.web1"
    assert routed("hosting.tasks.reconcile_site", str(other.pk)) is None  # web2: no worker
    # Central-only work, unknown rows and ids that are not ids stay central.
    assert routed("monitoring.tasks.rollup_recent_days") is None
    assert routed("hosting.tasks.sync_all_hosts") is None
    assert routed("hosting.tasks.reconcile_site", "00000000-0000-0000-0000-000000000000") is None
    assert routed("hosting.tasks.reconcile_site", "not-a-uuid") is None
    assert routed("hosting.tasks.retire_containers", []) is None


def test_the_queue_prefix_is_a_setting(settings):
    settings.HOST_QUEUE_PREFIX = "acme.host."
    web1 = beating(host("web1"))
    assert routed("hosting.tasks.sync_host", str(web1.pk)) == "acme.host.web1"


def test_celery_uses_the_router_and_an_explicit_queue_still_wins(settings):
    from hostpanel.celery import app

    web1 = beating(host("web1"))
    router = app.amqp.router
    chosen = router.route({}, "hosting.tasks.sync_host", (str(web1.pk),), {})
    assert chosen["queue"].name == "host.web1"
    chosen = router.route({"queue": "elsewhere"}, "hosting.tasks.sync_host", (str(web1.pk),), {})
    assert chosen["queue"].name == "elsewhere"


def test_beat_records_the_worker_and_sign_off_clears_only_its_own_beat():
    web1 = host("web1")
    workers.beat("web1", "host-web1@box-a")
    web1.refresh_from_db()
    assert web1.worker_name == "host-web1@box-a"
    assert workers.alive(web1)
    workers.signed_off("web1", "host-web1@box-b")  # another worker's sign-off: not ours
    web1.refresh_from_db()
    assert workers.alive(web1)
    workers.signed_off("web1", "host-web1@box-a")
    web1.refresh_from_db()
    assert not workers.alive(web1)
    with pytest.raises(workers.UnknownHost, match="no Docker host named 'nope'"):
        workers.beat("nope", "host-nope@box")


def test_a_host_worker_talks_to_its_own_engine_locally_and_to_others_over_their_endpoint(
    settings,
):
    web1 = services.create_host(
        actor=None, name="web1", endpoint="ssh://deploy@10.0.0.1", ssh_host_key=SSH_HOST_KEY
    )
    web2 = host("web2")
    assert engine.endpoint_of(web1) == "ssh://deploy@10.0.0.1"
    settings.HOST_WORKER = "web1"
    settings.HOST_WORKER_DOCKER_ENDPOINT = "unix:///run/docker.sock"
    assert engine.endpoint_of(web1) == "unix:///run/docker.sock"
    assert engine.endpoint_of(web2) == UNREACHABLE_ENDPOINT


def test_periodic_fan_outs_send_a_beating_hosts_share_to_its_worker(monkeypatch, settings):
    from hosting import proxy, tasks
    from monitoring import tasks as monitoring_tasks
    from monitoring import traffic

    web1 = beating(host("web1"))
    web2 = host("web2")
    DockerHost.objects.update(proxy_admin="http://127.0.0.1:9", proxy_access_log="/nonexistent")
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(tasks.sync_proxy, "delay", lambda pk: sent.append(("proxy", pk)))
    monkeypatch.setattr(
        monitoring_tasks.collect_host_traffic, "delay", lambda pk: sent.append(("traffic", pk))
    )
    excluded = []

    def sync_all(exclude):
        excluded.append(exclude)
        return {"web2": "loaded"}

    def collect_all(exclude):
        excluded.append(exclude)
        return {"web2": 0}

    monkeypatch.setattr(proxy, "sync_all", sync_all)
    monkeypatch.setattr(traffic, "collect_all", collect_all)
    assert tasks.sync_proxies() == {"web1": "sent to its worker", "web2": "loaded"}
    assert monitoring_tasks.collect_traffic() == {"web2": 0}
    assert excluded == [["web1"], ["web1"]]  # what runs centrally: every host but web1
    assert sent == [("proxy", str(web1.pk)), ("traffic", str(web1.pk))]
    assert web2.worker_heartbeat_at is None


def test_staff_see_each_hosts_worker_in_the_api_and_cannot_set_it():
    from tests.conftest import client_for
    from tests.factories import make_user

    web1 = beating(host("web1"))
    staff = client_for(make_user("ops@example.test", is_staff=True))
    shown = staff.get(f"/api/v1/hosts/{web1.pk}/").json()
    assert shown["worker_name"] == "host-web1@box"
    assert shown["worker_heartbeat_at"] is not None
    staff.patch(f"/api/v1/hosts/{web1.pk}/", {"worker_name": "forged"}, format="json")
    web1.refresh_from_db()
    assert web1.worker_name == "host-web1@box"


def test_a_change_on_a_host_with_a_worker_is_converged_by_that_worker(
    cast, sent_tasks, settings, monkeypatch
):
    """The web process does not reach such a host's engine: it asks the worker and waits
    RECONCILE_WAIT_SECONDS for its outcome, as it would for the engine."""
    from hosting import reconcile
    from tests.conftest import route_task

    settings.RECONCILE_WAIT_SECONDS = 0.3
    web1 = beating(host("web1"))
    site = make_site(cast.org, name="Blog", host=web1)

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine was called from the web process")

    monkeypatch.setattr(engine, "client", no_engine)
    site = services.start_site(site, actor=None)
    began = time.monotonic()
    after = reconcile.converge_now(site)
    assert time.monotonic() - began >= 0.3  # waited, then left it to the worker (202)
    assert after.reconcile_status == "pending"
    assert sent_tasks == [("reconcile_site", str(site.pk))]

    def worker_converges(site_id):
        Site.objects.filter(pk=site_id).update(reconcile_status="converged")

    route_task(monkeypatch, "reconcile_site", worker_converges)
    site = services.stop_site(site, actor=None)
    began = time.monotonic()
    assert reconcile.converge_now(site).reconcile_status == "converged"
    assert time.monotonic() - began < 0.3  # answered as soon as the worker had
