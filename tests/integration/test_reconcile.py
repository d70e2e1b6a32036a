"""The reconciler against real engines, a real web server and real workers: a frozen engine
slows only its own tenant, and a worker killed mid-reconcile leaves nothing the next run
cannot repair."""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

from accounts import services as accounts_services
from audit.models import AuditLog
from hosting import docker as engine
from hosting import reconcile, services
from hosting.models import Container, DockerHost, ReconcileStatus, Site
from hostpanel.models import TaskClaim
from tests import docker_engines
from tests.factories import make_org, make_user
from tests.integration import processes
from tests.integration.processes import send, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.every_database,
    pytest.mark.django_db(transaction=True),
]

FREEZE_SECONDS = 40
WRITES = 100


@pytest.fixture
def started(tmp_path):
    procs: list[processes.Process] = []
    yield procs
    for proc in procs:
        proc.stop()
        print(f"----- {proc.name} -----\n{proc.log()[-4000:]}")


def dockerd_pid(endpoint: str) -> int:
    return int((docker_engines.engine_dir(endpoint) / "docker.pid").read_text())


class frozen:
    """SIGSTOP an engine's dockerd for the block: it accepts connections, answers nothing."""

    def __init__(self, endpoint: str):
        self.pid = dockerd_pid(endpoint)

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


def make_host(name: str, endpoint: str) -> DockerHost:
    host = services.create_host(actor=None, name=name, endpoint=endpoint, network_mode="host")
    return services.ping_host(host, actor=None)


def running_site(org, host, name: str) -> Site:
    site = services.create_site(
        org,
        actor=None,
        name=name,
        site_type="docker",
        image=docker_engines.TEST_IMAGE,
        start_command="sleep 600",
        limits={"memory_mb": 32, "cpu_percent": 10},
        host=host,
    )
    site = reconcile.converge_now(site)
    assert site.reconcile_status == ReconcileStatus.CONVERGED, site.reconcile_error
    return site


def web_server(tmp_path, **env) -> tuple[processes.Process, int]:
    port = docker_engines.free_port()
    web = processes.Process(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "hostpanel.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
        ],
        processes.child_env(THROTTLE_TOKEN="100000/min", **env),
        tmp_path,
    )
    web.wait_for_log("Booting worker", timeout=30)
    return web, port


def call(port: int, token: str, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/organizations/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


def test_a_frozen_engine_slows_only_its_own_tenant(broker, started, docker_endpoints, tmp_path):
    from hosting.tasks import sync_all_hosts

    owner_a, owner_b = make_user(), make_user()
    org_a, org_b = make_org(owner_a, slug="tenant-a"), make_org(owner_b, slug="tenant-b")
    host_a = make_host("engine-a", docker_endpoints[0])
    host_b = make_host("engine-b", docker_endpoints[1])
    site_a = running_site(org_a, host_a, "sa")
    running_site(org_b, host_b, "sb")
    _, token_a = accounts_services.create_api_token(
        actor=owner_a, name="a", scopes=["read", "write"]
    )
    _, token_b = accounts_services.create_api_token(
        actor=owner_b, name="b", scopes=["read", "write"]
    )
    web, port = web_server(tmp_path)
    started.append(web)

    a_results: list[tuple[int, float]] = []
    b_results: list[tuple[int, float]] = []

    def tenant_a():
        a_results.append(call(port, token_a, "POST", "tenant-a/sites/sa/stop/"))
        a_results.append(
            call(port, token_a, "PATCH", "tenant-a/sites/sa/limits/", {"memory_mb": 48})
        )

    def tenant_b():
        for n in range(WRITES):
            if n % 10 == 9:  # some writes reach B's own engine (limits apply live)
                body = {"memory_mb": 32 + n % 20}
                b_results.append(call(port, token_b, "PATCH", "tenant-b/sites/sb/limits/", body))
            else:
                body = {"key": f"K{n}", "value": "v"}
                b_results.append(call(port, token_b, "POST", "tenant-b/sites/sb/env/", body))
            time.sleep(FREEZE_SECONDS * 0.8 / WRITES)

    with frozen(docker_endpoints[0]):
        freeze_started = time.monotonic()
        threads = [threading.Thread(target=tenant_a), threading.Thread(target=tenant_b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=FREEZE_SECONDS + 60)
        time.sleep(max(0.0, FREEZE_SECONDS - (time.monotonic() - freeze_started)))

    latencies = sorted(seconds for _, seconds in b_results)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"tenant B: {len(b_results)} writes, statuses {sorted({s for s, _ in b_results})}, "
        f"median {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; "
        f"tenant A: {a_results}"
    )
    assert len(b_results) == WRITES
    assert all(status in (200, 201) for status, _ in b_results), b_results
    assert p99 < 1.0
    # A's changes were recorded and answered within the bounded wait, as pending.
    assert [status for status, _ in a_results] == [202, 202]
    assert all(seconds < 25 for _, seconds in a_results)
    site_a.refresh_from_db()
    assert site_a.desired_state == "stopped"
    assert site_a.reconcile_status == ReconcileStatus.PENDING

    # The engine is back: the next retry (a probe, then the pending sites) converges A.
    retry_started = time.monotonic()
    started.append(processes.start_worker(tmp_path))
    send(sync_all_hosts)
    wait_until(
        lambda: Site.objects.get(pk=site_a.pk).reconcile_status == ReconcileStatus.CONVERGED,
        timeout=30,
        what="tenant A's site to converge",
    )
    print(f"tenant A converged {time.monotonic() - retry_started:.1f} s after the thaw")
    row = Container.objects.get(site=site_a)
    info = engine.inspect(host_a, row.docker_id)
    assert info["State"]["Status"] == "exited"
    assert info["HostConfig"]["Memory"] == 48 * 2**20
    for action in ("site.stop", "site.limits_update"):
        assert AuditLog.objects.filter(action=action, target_id=str(site_a.pk)).count() == 1
    assert "database is locked" not in web.log()


def test_worker_killed_mid_reconcile_leaves_no_duplicate_container(
    broker, started, docker_endpoints, tmp_path
):
    from hosting.tasks import reconcile_site

    owner = make_user()
    org = make_org(owner, slug="crash")
    host = make_host("engine-c", docker_endpoints[0])
    site = services.create_site(
        org,
        actor=None,
        name="c",
        site_type="docker",
        image=docker_engines.TEST_IMAGE,
        start_command="sleep 600",
        limits={"memory_mb": 32},
        host=host,
    )
    worker = processes.start_worker(tmp_path, concurrency=1)
    started.append(worker)
    claim_name = f"hosting.reconcile:{site.pk}"

    with frozen(docker_endpoints[0]):
        send(reconcile_site, str(site.pk))
        wait_until(
            lambda: TaskClaim.objects.filter(
                name=claim_name, last_started_at__isnull=False
            ).exists(),
            timeout=30,
            what="the reconcile to start",
        )
        time.sleep(1)  # its requests are queued on the frozen engine
        worker.kill(signal.SIGKILL)
    # The engine carries out whatever it had been asked before the kill.
    time.sleep(2)

    # Time passes: the dead worker's claim expires; the next run converges.
    TaskClaim.objects.filter(name=claim_name).update(expires_at=timezone.now())
    started.append(processes.start_worker(tmp_path, concurrency=1))
    send(reconcile_site, str(site.pk))
    wait_until(
        lambda: Site.objects.get(pk=site.pk).reconcile_status == ReconcileStatus.CONVERGED,
        timeout=60,
        what="the rerun to converge",
    )
    labelled = engine.site_containers(host, str(site.pk))
    assert len(labelled) == 1, labelled
    assert labelled[0]["State"] == "running"
    assert list(Container.objects.filter(site=site).values_list("docker_id", flat=True)) == [
        labelled[0]["Id"]
    ]
    assert AuditLog.objects.filter(action="site.create", target_id=str(site.pk)).count() == 1


class Crash(BaseException):
    """A worker dying at a line: not an Exception, so no handler on the way cleans up."""


@pytest.mark.parametrize("line", ["after_create", "before_record"])
def test_a_run_that_dies_at_any_line_is_repaired_by_the_next(monkeypatch, docker_endpoints, line):
    owner = make_user()
    org = make_org(owner, slug="crash2")
    host = make_host("engine-d", docker_endpoints[0])
    site = services.create_site(
        org,
        actor=None,
        name="d",
        site_type="docker",
        image=docker_engines.TEST_IMAGE,
        start_command="sleep 600",
        limits={"memory_mb": 32},
        host=host,
    )

    def die(*args, **kwargs):
        raise Crash

    if line == "after_create":  # the container exists, its row was never written
        monkeypatch.setattr(Container.objects, "create", die)
    else:  # the engine converged; the observation was never recorded
        monkeypatch.setattr(reconcile, "record_converged", die)
    with pytest.raises(Crash):
        reconcile.reconcile_site(site.pk)
    monkeypatch.undo()
    assert len(engine.site_containers(host, str(site.pk))) == 1

    outcome = reconcile.reconcile_site(site.pk)

    assert outcome.converged
    labelled = engine.site_containers(host, str(site.pk))
    assert len(labelled) == 1, labelled
    assert labelled[0]["State"] == "running"
    assert list(Container.objects.filter(site=site).values_list("docker_id", flat=True)) == [
        labelled[0]["Id"]
    ]
