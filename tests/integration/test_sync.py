"""Container sync (seed 001's background monitor) against real, private Docker engines.

Containers are made and removed "behind the panel's back" with the docker SDK directly; the
panel's own sites go through the services. hosting.sync.sync_host reconciles one engine;
the Celery tasks around it (sync_host, restore_site, probe_host, sync_all_hosts) are run
eagerly with `.apply()`.
"""

from __future__ import annotations

from datetime import timedelta

import docker
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditLog
from hosting import docker as engine
from hosting import services, sync, tasks
from hosting.models import Container, DockerHost, HostStatus, ObservedState, Site
from hosting.reconcile import converge_now
from hostpanel.models import TaskClaim
from tests.docker_engines import TEST_IMAGE

pytestmark = pytest.mark.integration

DEAD_ENDPOINT = "unix:///tmp/hp-dk-sync-nonexistent/docker.sock"  # no engine ever listens
SMALL = {"memory_mb": 32, "cpu_percent": 10, "max_processes": 16}


@pytest.fixture
def dk(docker_endpoints):
    """A docker SDK client on engine 1: the world outside the panel."""
    client = docker.DockerClient(base_url=docker_endpoints[0], timeout=30)
    yield client
    client.close()


def behind_the_back(dk, *, start: bool = True, labels: dict | None = None, name=None):
    kwargs = {"labels": labels or {}, "network_mode": "none", "name": name}
    if start:
        return dk.containers.run(TEST_IMAGE, ["sleep", "600"], detach=True, **kwargs)
    return dk.containers.create(TEST_IMAGE, ["sleep", "600"], **kwargs)


def panel_site(org, host, name: str = "Blog", **extra) -> Site:
    """A site made through the services; desired running means a real running container."""
    return converge_now(
        services.create_site(
            org,
            actor=None,
            name=name,
            site_type="docker",
            image=TEST_IMAGE,
            start_command="sleep 600",
            limits=dict(SMALL),
            host=host,
            **extra,
        )
    )


def rows(host) -> list[dict]:
    return list(Container.objects.filter(host=host).order_by("docker_id").values())


def drift_audits(site) -> int:
    return AuditLog.objects.filter(action="site.drift", target_id=str(site.pk)).count()


def break_endpoint(host: DockerHost) -> DockerHost:
    DockerHost.objects.filter(pk=host.pk).update(endpoint=DEAD_ENDPOINT)
    return DockerHost.objects.get(pk=host.pk)


def mend_endpoint(host: DockerHost, endpoint: str) -> DockerHost:
    DockerHost.objects.filter(pk=host.pk).update(endpoint=endpoint)
    return DockerHost.objects.get(pk=host.pk)


@pytest.fixture
def restores_run_inline(monkeypatch):
    """restore_site.delay runs the task eagerly, here, and records the site ids."""
    ran: list[str] = []

    def delay(site_id):
        ran.append(site_id)
        return tasks.restore_site.apply(args=[site_id])

    monkeypatch.setattr(tasks.restore_site, "delay", delay)
    return ran


# --- containers made and removed behind the panel's back -----------------------------------


def test_container_created_behind_the_back_is_picked_up_unlinked(docker_host, dk):
    outsider = behind_the_back(dk, name="not-ours")

    result = sync.sync_host(docker_host)

    assert result.seen == 1
    assert result.linked == 0
    row = Container.objects.get(host=docker_host, docker_id=outsider.id)
    assert row.site is None
    assert row.name == "not-ours"
    assert row.image == TEST_IMAGE
    assert row.state == "running"
    assert row.status.startswith("Up")
    assert row.created is not None
    docker_host.refresh_from_db()
    assert docker_host.last_seen_at == row.last_seen_at


def test_state_changes_behind_the_back_are_recorded(docker_host, dk):
    outsider = behind_the_back(dk, start=False)
    sync.sync_host(docker_host)
    assert Container.objects.get(docker_id=outsider.id).state == "created"

    outsider.start()
    sync.sync_host(docker_host)
    assert Container.objects.get(docker_id=outsider.id).state == "running"


def test_container_removed_behind_the_back_is_missing_then_deleted_when_stale(
    docker_host, dk, settings
):
    keep, gone = behind_the_back(dk), behind_the_back(dk)
    sync.sync_host(docker_host)
    gone.remove(force=True)

    result = sync.sync_host(docker_host)

    row = Container.objects.get(docker_id=gone.id)
    assert row.state == ObservedState.MISSING
    assert row.status == "Not listed by the engine"
    assert result.removed == 0
    assert Container.objects.get(docker_id=keep.id).state == "running"

    # Not seen for longer than CONTAINER_STALE_SECONDS (seed 001: 5 minutes): deleted.
    long_ago = timezone.now() - timedelta(seconds=settings.CONTAINER_STALE_SECONDS + 1)
    Container.objects.filter(pk=row.pk).update(last_seen_at=long_ago)
    result = sync.sync_host(docker_host)

    assert result.removed == 1
    assert not Container.objects.filter(docker_id=gone.id).exists()
    assert Container.objects.filter(docker_id=keep.id).exists()


def test_a_missing_row_seen_again_within_the_window_comes_back(docker_host, dk):
    outsider = behind_the_back(dk)
    sync.sync_host(docker_host)
    Container.objects.filter(docker_id=outsider.id).update(
        state=ObservedState.MISSING, last_seen_at=timezone.now() - timedelta(minutes=2)
    )

    sync.sync_host(docker_host)

    assert Container.objects.get(docker_id=outsider.id).state == "running"


def test_sync_of_one_host_leaves_the_other_hosts_rows_alone(
    docker_host, second_docker_host, docker_endpoints
):
    other = docker.DockerClient(base_url=docker_endpoints[1], timeout=30)
    try:
        on_two = behind_the_back(other)
    finally:
        other.close()
    sync.sync_host(second_docker_host)
    before = rows(second_docker_host)

    sync.sync_host(docker_host)

    assert rows(second_docker_host) == before
    assert [r["docker_id"] for r in before] == [on_two.id]


# --- linking to sites by label -------------------------------------------------------------


def test_panel_site_container_is_linked_to_its_site_by_label(cast, docker_host):
    site = panel_site(cast.org, docker_host)
    Container.objects.filter(site=site).delete()  # as if the panel had never recorded it

    result = sync.sync_host(docker_host)

    assert result.linked == 1
    row = Container.objects.get(host=docker_host)
    assert row.site == site
    assert row.labels[engine.LABEL_SITE] == str(site.pk)
    site.refresh_from_db()
    assert site.observed_state == ObservedState.RUNNING
    assert result.drifted == []


def test_site_stopped_behind_the_back_is_observed_exited(cast, docker_host, dk):
    site = panel_site(cast.org, docker_host)
    dk.containers.get(services.current_container(site).docker_id).stop(timeout=0)

    sync.sync_host(docker_host)

    site.refresh_from_db()
    assert site.observed_state == ObservedState.EXITED
    assert drift_audits(site) == 0  # its container is there: not drift


@pytest.mark.parametrize("claim", ["foreign_site", "foreign_org"])
def test_a_label_claiming_another_organizations_site_is_not_linked(cast, docker_host, dk, claim):
    theirs = panel_site(cast.other_org, docker_host, name="Theirs", desired_state="stopped")
    ours = panel_site(cast.org, docker_host, name="Ours", desired_state="stopped")
    if claim == "foreign_site":  # our organization's label on their site
        labels = {**engine.site_labels(theirs), engine.LABEL_ORGANIZATION: str(cast.org.pk)}
    else:  # their organization's label on our site
        labels = {**engine.site_labels(ours), engine.LABEL_ORGANIZATION: str(cast.other_org.pk)}
    forged = behind_the_back(dk, labels=labels)

    result = sync.sync_host(docker_host)

    assert result.linked == 0
    assert Container.objects.get(docker_id=forged.id).site is None
    for site in (theirs, ours):
        site.refresh_from_db()
        assert site.observed_state == ObservedState.STOPPED  # never started; not drift


def test_labels_that_are_not_the_panels_are_ignored(cast, docker_host, dk):
    site = panel_site(cast.org, docker_host, desired_state="stopped")
    unmanaged = {**engine.site_labels(site), engine.LABEL_MANAGED: "false"}
    garbage = {engine.LABEL_MANAGED: "true", engine.LABEL_SITE: "not-a-uuid"}
    behind_the_back(dk, labels=unmanaged)
    behind_the_back(dk, labels=garbage)

    result = sync.sync_host(docker_host)

    assert result.seen == 2
    assert result.linked == 0
    assert not Container.objects.filter(site__isnull=False).exists()


# --- drift and its repair ------------------------------------------------------------------


def test_site_container_removed_behind_the_back_is_drift_and_restore_brings_it_back(
    cast, docker_host, dk
):
    site = panel_site(cast.org, docker_host)
    old_id = services.current_container(site).docker_id
    dk.containers.get(old_id).remove(force=True)

    result = sync.sync_host(docker_host)

    site.refresh_from_db()
    assert site.observed_state == ObservedState.MISSING
    assert result.drifted == [str(site.pk)]
    entry = AuditLog.objects.get(action="site.drift", target_id=str(site.pk))
    assert entry.organization == cast.org
    assert entry.changes["observed_state"] == {"before": "running", "after": "missing"}
    assert entry.changes["host"] == docker_host.name

    # Reported once; still listed for restore until it is back.
    assert sync.sync_host(docker_host).drifted == [str(site.pk)]
    assert drift_audits(site) == 1

    outcome = tasks.restore_site.apply(args=[str(site.pk)])

    assert outcome.successful(), outcome.traceback
    assert outcome.result == "restarted"
    site.refresh_from_db()
    assert site.observed_state == ObservedState.RUNNING
    new = services.current_container(site)
    assert new.docker_id != old_id
    assert dk.containers.get(new.docker_id).status == "running"
    result = sync.sync_host(docker_host)
    assert result.drifted == []
    site.refresh_from_db()
    assert site.observed_state == ObservedState.RUNNING
    assert list(Container.objects.filter(site=site).values_list("docker_id", flat=True)) == [
        new.docker_id
    ]


def test_sync_task_restarts_a_drifted_site_that_should_run(
    cast, docker_host, dk, restores_run_inline
):
    wanted = panel_site(cast.org, docker_host, name="Wanted")
    stopped = panel_site(cast.org, docker_host, name="Stopped")
    converge_now(services.stop_site(stopped, actor=None))
    for site in (wanted, stopped):
        dk.containers.get(services.current_container(site).docker_id).remove(force=True)

    outcome = tasks.sync_host.apply(args=[str(docker_host.pk)])

    assert outcome.successful(), outcome.traceback
    assert restores_run_inline == [str(wanted.pk)]
    wanted.refresh_from_db()
    stopped.refresh_from_db()
    assert wanted.observed_state == ObservedState.RUNNING
    assert stopped.observed_state == ObservedState.MISSING  # reported, not restarted
    assert drift_audits(wanted) == drift_audits(stopped) == 1
    running = dk.containers.list(filters={"label": f"{engine.LABEL_SITE}={wanted.pk}"})
    assert len(running) == 1


def test_restore_leaves_alone_sites_that_are_back_or_not_wanted(cast, docker_host):
    site = panel_site(cast.org, docker_host)
    assert tasks.restore_site.apply(args=[str(site.pk)]).result == "already back"
    converge_now(services.stop_site(site, actor=None))
    assert tasks.restore_site.apply(args=[str(site.pk)]).result == "not wanted"


def test_a_site_started_while_the_engine_was_listing_is_not_drift(cast, docker_host, monkeypatch):
    """The listing is a snapshot: what the panel does meanwhile is newer, not missing."""
    real_list = engine.list_containers
    started: list[Site] = []

    def list_then_start_a_site(host):
        listing = real_list(host)
        started.append(panel_site(cast.org, docker_host, name="Fresh"))
        return listing

    monkeypatch.setattr(engine, "list_containers", list_then_start_a_site)

    result = sync.sync_host(docker_host)

    (fresh,) = started
    fresh.refresh_from_db()
    assert result.drifted == []
    assert fresh.observed_state == ObservedState.RUNNING
    assert drift_audits(fresh) == 0
    assert services.current_container(fresh).state == "running"


def test_a_deleted_sites_leftover_container_does_not_revive_it(cast, docker_host, dk):
    site = panel_site(cast.org, docker_host, desired_state="stopped")
    converge_now(services.delete_site(site, actor=None))
    behind_the_back(dk, labels=engine.site_labels(site))

    result = sync.sync_host(docker_host)

    site.refresh_from_db()
    assert site.observed_state == ObservedState.REMOVED
    assert result.drifted == []


# --- queries -------------------------------------------------------------------------------


def test_query_count_does_not_grow_with_containers(cast, docker_host, dk):
    sites = [
        panel_site(cast.org, docker_host, name=f"Site {n}", desired_state="stopped")
        for n in range(3)
    ]

    def add(count: int) -> None:
        for n in range(count):
            labels = engine.site_labels(sites[n % 3]) if n % 2 else {}
            behind_the_back(dk, start=False, labels=labels)

    def queries_of_a_sync() -> int:
        with CaptureQueriesContext(connection) as queries:
            sync.sync_host(docker_host)
        return len(queries)

    add(5)
    few = queries_of_a_sync()
    # 100 rows of 14 columns is past what Django 5.2 puts in one SQLite statement by default.
    add(95)
    many = queries_of_a_sync()
    steady = queries_of_a_sync()

    assert Container.objects.filter(host=docker_host).count() == 100
    assert few == many == steady, (few, many, steady)
    assert few <= 10


# --- an engine that does not answer ------------------------------------------------------


def test_unreachable_engine_raises_and_leaves_every_row_alone(cast, docker_host, dk):
    site = panel_site(cast.org, docker_host)
    behind_the_back(dk)
    sync.sync_host(docker_host)
    before = rows(docker_host)
    site_before = Site.objects.filter(pk=site.pk).values().get()
    host = break_endpoint(docker_host)
    seen_before = host.last_seen_at

    with pytest.raises(engine.HostUnavailable):
        sync.sync_host(host)

    assert rows(host) == before
    assert Site.objects.filter(pk=site.pk).values().get() == site_before
    host.refresh_from_db()
    assert host.last_seen_at == seen_before


def test_sync_task_marks_host_offline_when_retries_are_spent_and_keeps_rows(docker_host, dk):
    behind_the_back(dk)
    behind_the_back(dk)
    sync.sync_host(docker_host)
    before = rows(docker_host)
    host = break_endpoint(docker_host)

    outcome = tasks.sync_host.apply(args=[str(host.pk)], retries=3)

    assert outcome.result == "offline"
    host.refresh_from_db()
    assert host.status == HostStatus.OFFLINE
    assert host.last_error
    assert AuditLog.objects.filter(action="host.offline", target_id=str(host.pk)).count() == 1
    assert rows(host) == before


def test_sync_task_retries_before_giving_up(docker_host, monkeypatch):
    host = break_endpoint(docker_host)
    calls = []
    real_sync = sync.sync_host

    def counting_sync(h):
        calls.append(h.pk)
        return real_sync(h)

    monkeypatch.setattr(sync, "sync_host", counting_sync)

    # Eagerly, Celery runs each retry at once (no countdown): four tries, then offline.
    outcome = tasks.sync_host.apply(args=[str(host.pk)])

    assert outcome.result == "offline"
    assert len(calls) == 1 + tasks.sync_host.max_retries
    host.refresh_from_db()
    assert host.status == HostStatus.OFFLINE


def test_probe_brings_an_offline_host_back_and_sync_resumes_without_losing_rows(
    docker_host, dk, docker_endpoints, settings
):
    kept = behind_the_back(dk)
    sync.sync_host(docker_host)
    host = break_endpoint(docker_host)
    assert tasks.sync_host.apply(args=[str(host.pk)], retries=3).result == "offline"
    assert tasks.probe_host.apply(args=[str(host.pk)]).result == "offline"  # still down

    # A long outage: the rows have not been seen for longer than the stale window.
    long_ago = timezone.now() - timedelta(seconds=settings.CONTAINER_STALE_SECONDS * 3)
    Container.objects.filter(host=host).update(last_seen_at=long_ago)
    added_meanwhile = behind_the_back(dk)
    host = mend_endpoint(host, docker_endpoints[0])
    TaskClaim.objects.all().delete()

    assert tasks.probe_host.apply(args=[str(host.pk)]).result == "online"
    host.refresh_from_db()
    assert host.status == HostStatus.ONLINE
    assert AuditLog.objects.filter(action="host.online", target_id=str(host.pk)).count() == 1

    outcome = tasks.sync_host.apply(args=[str(host.pk)])

    assert outcome.result.startswith("seen 2, removed 0")
    ids = {r["docker_id"] for r in rows(host)}
    assert ids == {kept.id, added_meanwhile.id}
    assert all(r["state"] == "running" for r in rows(host))


def test_sync_all_hosts_syncs_online_hosts_and_probes_offline_ones(
    docker_host, second_docker_host, monkeypatch
):
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(tasks.sync_host, "delay", lambda pk: sent.append(("sync", pk)))
    monkeypatch.setattr(tasks.probe_host, "delay", lambda pk: sent.append(("probe", pk)))
    services.mark_host_offline(second_docker_host, "gone")

    assert tasks.sync_all_hosts.apply().result == 2

    assert sorted(sent) == [("probe", str(second_docker_host.pk)), ("sync", str(docker_host.pk))]
    # A second beat a moment later finds the job done.
    assert tasks.sync_all_hosts.apply().result == 0


def test_a_successful_sync_of_an_offline_host_brings_it_online_once(docker_host):
    services.mark_host_offline(docker_host, "was down")
    docker_host.refresh_from_db()

    sync.sync_host(docker_host)
    sync.sync_host(docker_host)

    docker_host.refresh_from_db()
    assert docker_host.status == HostStatus.ONLINE
    assert docker_host.last_error == ""
    online = AuditLog.objects.filter(action="host.online", target_id=str(docker_host.pk))
    assert online.count() == 1


def test_sync_does_not_undo_a_status_change_made_while_it_ran(docker_host, monkeypatch):
    real_list = engine.list_containers

    def list_while_staff_start_maintenance(host):
        listing = real_list(host)
        services.update_host(docker_host, actor=None, status=HostStatus.MAINTENANCE)
        return listing

    monkeypatch.setattr(engine, "list_containers", list_while_staff_start_maintenance)

    sync.sync_host(docker_host)

    docker_host.refresh_from_db()
    assert docker_host.status == HostStatus.MAINTENANCE


def test_sync_records_the_engine_version(docker_host):
    DockerHost.objects.filter(pk=docker_host.pk).update(engine_version="")
    docker_host.refresh_from_db()

    sync.sync_host(docker_host)

    docker_host.refresh_from_db()
    assert docker_host.engine_version
    assert docker_host.engine_version == engine.client(docker_host).version()["Version"]
