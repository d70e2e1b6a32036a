"""The Celery side for real: worker and beat processes on Redis, real Docker engines."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import timedelta

import docker
import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditLog
from hosting import services
from hosting.models import Container, DockerHost, HostStatus, Site
from hosting.reconcile import converge_now
from hostpanel.models import TaskClaim
from monitoring.models import DailyUsage, UsageSample
from tests import docker_engines
from tests.factories import make_org, make_user
from tests.integration import processes
from tests.integration.processes import send, start_beat, start_worker, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.every_database,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def procs(tmp_path):
    """Processes started by a test; all stopped at its end, whatever happens."""
    started: list[processes.Process] = []

    class Starter:
        def worker(self, **env):
            started.append(start_worker(tmp_path, **env))
            return started[-1]

        def beat(self, **env):
            started.append(start_beat(tmp_path, **env))
            return started[-1]

    yield Starter()
    for proc in started:
        proc.stop()
        # Shown by pytest only when the test failed.
        print(f"----- {proc.name} -----\n{proc.log()[-4000:]}")


def make_host(name: str, endpoint: str) -> DockerHost:
    host = services.create_host(actor=None, name=name, endpoint=endpoint, network_mode="host")
    return services.ping_host(host, actor=None)


def test_worker_syncs_containers_made_and_removed_behind_the_panels_back(
    broker, procs, docker_endpoints
):
    from hosting.tasks import sync_all_hosts

    host = make_host("engine-1", docker_endpoints[0])
    procs.worker()
    engine = docker.DockerClient(base_url=docker_endpoints[0])
    outsider = engine.containers.run(
        docker_engines.TEST_IMAGE, ["sleep", "300"], detach=True, network_mode="none"
    )

    send(sync_all_hosts)
    wait_until(
        lambda: Container.objects.filter(
            host=host, docker_id=outsider.id, state="running"
        ).exists(),
        what="the worker to record the container",
    )
    assert Container.objects.get(docker_id=outsider.id).site is None

    outsider.remove(force=True)
    TaskClaim.objects.filter(name="hosting.sync_all_hosts").update(expires_at=timezone.now())
    send(sync_all_hosts)
    wait_until(
        lambda: Container.objects.get(docker_id=outsider.id).state == "missing",
        what="the removed container to be marked missing",
    )


def test_engine_stopped_mid_run_marks_host_offline_and_loses_no_rows(
    broker, procs, docker_endpoints
):
    from hosting.tasks import sync_all_hosts, sync_host

    first = make_host("engine-1", docker_endpoints[0])
    second = make_host("engine-2", docker_endpoints[1])
    engine = docker.DockerClient(base_url=docker_endpoints[1])
    for _ in range(3):
        engine.containers.create(docker_engines.TEST_IMAGE, ["true"], network_mode="none")
    procs.worker()
    send(sync_host, str(second.pk))
    wait_until(lambda: Container.objects.filter(host=second).count() == 3, what="first sync")

    docker_engines.stop_engine(docker_endpoints[1])
    try:
        send(sync_all_hosts)
        wait_until(
            lambda: DockerHost.objects.get(pk=second.pk).status == HostStatus.OFFLINE,
            timeout=60,
            what="the stopped engine's host to go offline after its retries",
        )
        assert Container.objects.filter(host=second).count() == 3  # nothing deleted as stale
        assert AuditLog.objects.filter(action="host.offline", target_id=str(second.pk)).count() == 1
        assert DockerHost.objects.get(pk=first.pk).status == HostStatus.ONLINE
    finally:
        docker_engines.restart_engines()

    TaskClaim.objects.filter(name="hosting.sync_all_hosts").update(expires_at=timezone.now())
    send(sync_all_hosts)  # probes the offline host, which answers again
    wait_until(
        lambda: DockerHost.objects.get(pk=second.pk).status == HostStatus.ONLINE,
        what="the host to come back online",
    )


def _fill_samples(site: Site, day_start, rows: int) -> None:
    """Bulk-generate samples inside the database (a recursive CTE works on both engines)."""
    table = UsageSample._meta.db_table
    ts = UsageSample._meta.get_field("timestamp").get_db_prep_value(
        day_start + timedelta(hours=12), connection
    )
    site_id = Site._meta.pk.get_db_prep_value(site.pk, connection)
    org_id = Site._meta.get_field("organization").target_field.get_db_prep_value(
        site.organization_id, connection
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "  # noqa: S608
            f"INSERT INTO {table} (organization_id, site_id, docker_id, timestamp, cpu_percent, "
            "memory_bytes, memory_limit_bytes, pids, cpu_usage_ns, net_rx_bytes, net_tx_bytes, "
            "block_read_bytes, block_write_bytes, bandwidth_bytes) "
            "SELECT %s, %s, 'x', %s, i %% 100, 1048576 * (i %% 50), 0, 1, 0, 0, 0, 0, 0, 1024 "
            "FROM n",
            [rows, org_id, site_id, ts],
        )


def test_sigkill_during_rollup_leaves_no_partial_or_duplicate_day(broker, procs):
    from monitoring.tasks import rollup_recent_days

    owner = make_user()
    org = make_org(owner)
    services.create_host(actor=None, name="idle", endpoint="unix:///nonexistent.sock")
    site = converge_now(
        services.create_site(
            org, actor=None, name="Big", site_type="static", desired_state="stopped"
        )
    )
    yesterday = (timezone.now() - timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    rows = 400_000
    _fill_samples(site, yesterday, rows)

    worker = procs.worker(concurrency=1)
    send(rollup_recent_days)
    wait_until(
        lambda: TaskClaim.objects.filter(
            name="monitoring.rollup_recent_days", last_started_at__isnull=False
        ).exists(),
        timeout=30,
        what="the rollup to start",
    )
    worker.kill(signal.SIGKILL)
    killed_mid_run = not DailyUsage.objects.exists()

    # Whatever the moment of the kill: no day is partial.
    for row in DailyUsage.objects.all():
        assert row.samples == rows
    # Time passes: the dead worker's lease expires and the next run finalises the day.
    TaskClaim.objects.filter(name="monitoring.rollup_recent_days").update(expires_at=timezone.now())
    procs.worker(concurrency=1)
    send(rollup_recent_days)
    wait_until(lambda: DailyUsage.objects.exists(), timeout=60, what="the rollup to finish")
    wait_until(
        lambda: (
            TaskClaim.objects.get(name="monitoring.rollup_recent_days").last_finished_at is not None
        ),
        what="the rerun to release its claim",
    )
    day = DailyUsage.objects.get(site=site)  # exactly one row: no duplicate
    assert day.samples == rows
    assert day.date == yesterday.date()
    assert day.total_bandwidth_mb == pytest.approx(rows * 1024 / 1048576)
    print(f"killed mid-run: {killed_mid_run}")


def test_two_beats_at_once_do_not_double_run_a_task(broker, procs):
    interval = 2
    quiet = {"USAGE_INTERVAL_SECONDS": "3600", "HEALTH_INTERVAL_SECONDS": "3600"}
    procs.worker(SYNC_INTERVAL_SECONDS=str(interval), **quiet)
    beats = [procs.beat(SYNC_INTERVAL_SECONDS=str(interval), **quiet) for _ in range(2)]
    started = time.monotonic()
    time.sleep(9)
    elapsed = time.monotonic() - started

    sent = [beat.log().count("Sending due task sync-containers") for beat in beats]
    assert all(n >= 2 for n in sent), sent  # both beats really fired
    runs = TaskClaim.objects.get(name="hosting.sync_all_hosts").runs
    assert 1 <= runs <= elapsed / interval + 1, (runs, sent)
    assert runs < sum(sent)


def test_busy_container_cpu_matches_docker_stats(broker, procs, docker_endpoints):
    owner = make_user()
    org = make_org(owner)
    make_host("engine-1", docker_endpoints[0])
    site = converge_now(
        services.create_site(
            org,
            actor=None,
            name="busy",
            site_type="docker",
            image=docker_engines.TEST_IMAGE,
            start_command="sh -c 'yes > /dev/null'",
            limits={"memory_mb": 32, "cpu_percent": 50},
        )
    )
    procs.worker(USAGE_INTERVAL_SECONDS="2", SYNC_INTERVAL_SECONDS="3600")
    procs.beat(USAGE_INTERVAL_SECONDS="2", SYNC_INTERVAL_SECONDS="3600")
    wait_until(
        lambda: UsageSample.objects.filter(site=site, cpu_percent__isnull=False).count() >= 2,
        timeout=60,
        what="two samples with a CPU rate",
    )
    ours = UsageSample.objects.filter(site=site, cpu_percent__isnull=False).first().cpu_percent
    container = services.current_container(site)
    shown = (
        subprocess.run(
            [
                "docker",
                "-H",
                docker_endpoints[0],
                "stats",
                "--no-stream",
                "--format",
                "{{.CPUPerc}}",
                container.docker_id,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        .stdout.strip()
        .rstrip("%")
    )
    assert abs(ours - float(shown)) <= 10, (ours, shown)
