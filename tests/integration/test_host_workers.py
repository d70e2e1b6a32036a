"""A worker per host, for real: Redis, two Docker engines, a host worker on each (started
with bin/host-worker) and a central worker. Engine 1's row names an endpoint nobody can
reach, so only its own worker (talking to its local engine) can do its work: a container
there, a sample from there, prove which worker ran what; the workers' logs name each task.
"""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import docker
import pytest
from django.utils import timezone

from hosting import queue, services, workers
from hosting.models import DockerHost, ObservedState, Site
from hosting.reconcile import converge_now
from hostpanel.models import TaskClaim
from monitoring.models import UsageSample
from tests import docker_engines
from tests.factories import make_org, make_user
from tests.integration import processes
from tests.integration.processes import QUEUE, ROOT, Process, start_worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PREFIX = f"{QUEUE}.host."
TIMEOUT = 3  # seconds without a heartbeat before a host's work goes central
WORKER_ENV = {
    "HOST_QUEUE_PREFIX": PREFIX,
    "HOST_WORKER_HEARTBEAT_SECONDS": "0.5",
    "HOST_WORKER_TIMEOUT_SECONDS": str(TIMEOUT),
    "USAGE_INTERVAL_SECONDS": "2",
}
NOWHERE = "unix:///nonexistent/engine-1.sock"


def start_host_worker(log_dir: Path, name: str, endpoint: str) -> Process:
    proc = Process(
        f"host-{name}",
        [str(ROOT / "bin/host-worker"), name, "--without-gossip", "--without-mingle"],
        processes.child_env(HOST_WORKER_DOCKER_ENDPOINT=endpoint, **WORKER_ENV),
        log_dir,
    )
    proc.wait_for_log("ready.", timeout=90)
    return proc


def send(task: str, *args) -> str:
    """Send as the panel does (the router picks the queue), on the test broker; the central
    queue is this run's QUEUE. Returns the queue used."""
    from hostpanel.celery import app

    route = workers.route(task, list(args), {}, {})
    queue = route["queue"] if route else QUEUE
    with app.connection_for_write(processes.REDIS_URL) as conn:
        app.send_task(task, args=list(args), connection=conn, queue=queue)
    return queue


def site_on(org, host: DockerHost, name: str) -> Site:
    return services.create_site(
        org,
        actor=None,
        name=name,
        site_type="docker",
        image=docker_engines.TEST_IMAGE,
        start_command="sleep 600",
        host=host,
        limits={"memory_mb": 32, "cpu_percent": 10},
    )


def observed(site: Site) -> str:
    return Site.objects.get(pk=site.pk).observed_state


def ran(proc: Process, task: str) -> int:
    return proc.log().count(f"Task {task}[") // 2  # "received" and "succeeded"/"raised"


def running(endpoint: str) -> int:
    return len(docker.DockerClient(base_url=endpoint).containers.list())


def alive(host: DockerHost) -> bool:
    return workers.alive(DockerHost.objects.get(pk=host.pk))


@pytest.fixture
def started(tmp_path):
    procs: list[Process] = []
    yield procs
    for proc in procs:
        proc.stop()
        print(f"----- {proc.name} -----\n{proc.log()[-5000:]}")


def test_each_hosts_work_runs_on_its_own_worker_and_survives_the_worker_dying(
    broker, started, tmp_path, docker_endpoints, settings, monkeypatch
):
    settings.HOST_QUEUE_PREFIX = PREFIX
    settings.HOST_WORKER_TIMEOUT_SECONDS = TIMEOUT
    org = make_org(make_user())
    services.update_quota(org, actor=None, max_sites=10)
    one = services.ping_host(
        services.create_host(
            actor=None, name="engine-1", endpoint=docker_endpoints[0], network_mode="none"
        ),
        actor=None,
    )
    two = services.ping_host(
        services.create_host(
            actor=None, name="engine-2", endpoint=docker_endpoints[1], network_mode="none"
        ),
        actor=None,
    )
    DockerHost.objects.filter(pk=one.pk).update(endpoint=NOWHERE)  # its own worker only
    worker_one = start_host_worker(tmp_path, "engine-1", docker_endpoints[0])
    started.append(worker_one)
    worker_two = start_host_worker(tmp_path, "engine-2", docker_endpoints[1])
    started.append(worker_two)
    central = start_worker(tmp_path, **WORKER_ENV)
    started.append(central)
    wait_until(lambda: alive(one) and alive(two), what="both host workers to beat")
    assert DockerHost.objects.get(pk=one.pk).worker_name.startswith("host-engine-1@")

    # 1. Each host's work runs on its own worker. A change made through the web path
    #    (converge_now) is handed to the worker too: this process cannot reach engine 1.
    monkeypatch.setattr(
        queue, "send", lambda task, *args, **kw: send(f"hosting.tasks.{task}", *args)
    )
    a = converge_now(site_on(org, one, "a"))
    assert (a.reconcile_status, a.observed_state) == ("converged", "running"), a.reconcile_error
    b = site_on(org, two, "b")
    assert send("hosting.tasks.reconcile_site", str(b.pk)) == f"{PREFIX}engine-2"
    wait_until(
        lambda: observed(a) == observed(b) == ObservedState.RUNNING,
        timeout=60,
        what="each host worker to start its site",
    )
    send("hosting.tasks.sync_all_hosts")  # central fan-outs, routed per host
    send("monitoring.tasks.collect_usage")
    wait_until(
        lambda: (
            UsageSample.objects.filter(site=a).exists()
            and UsageSample.objects.filter(site=b).exists()
        ),
        timeout=30,
        what="a sample from each host",
    )
    wait_until(lambda: ran(worker_one, "hosting.tasks.sync_host") >= 1, what="engine-1's sync")
    wait_until(lambda: ran(worker_two, "hosting.tasks.sync_host") >= 1, what="engine-2's sync")
    for task in ("reconcile_site", "sync_host", "collect_host_usage"):
        assert (
            ran(worker_one, f"hosting.tasks.{task}") + ran(worker_one, f"monitoring.tasks.{task}")
            >= 1
        ), task
        assert f".{task}[" not in central.log(), task  # central only fanned out
    assert ran(central, "hosting.tasks.sync_all_hosts") == 1

    # 2. Engine 2's worker dies with a message on its queue; the rescue moves it central,
    #    where the reconciler reaches engine 2 over its endpoint.
    worker_two.kill(signal.SIGKILL)
    services.stop_site(b, actor=None)
    DockerHost.objects.filter(pk=two.pk).update(worker_heartbeat_at=timezone.now())  # just died
    assert send("hosting.tasks.reconcile_site", str(b.pk)) == f"{PREFIX}engine-2"
    DockerHost.objects.filter(pk=two.pk).update(
        worker_heartbeat_at=timezone.now() - timedelta(seconds=TIMEOUT + 1)
    )
    assert broker.llen(f"{PREFIX}engine-2") == 1
    send("hosting.tasks.rescue_host_queues")
    wait_until(lambda: observed(b) == ObservedState.EXITED, timeout=60, what="b stopped")
    assert broker.llen(f"{PREFIX}engine-2") == 0
    assert "host engine-2: worker gone, 1 task(s) moved to the central queue" in central.log()
    assert ran(central, "hosting.tasks.reconcile_site") >= 1
    # New work for engine 2 goes central directly now.
    assert send("hosting.tasks.sync_host", str(two.pk)) == QUEUE

    # 3. Engine 1's worker dies: the central path cannot reach its engine, so its change
    #    waits, and runs when the worker is back.
    worker_one.kill(signal.SIGKILL)
    DockerHost.objects.filter(pk=one.pk).update(
        worker_heartbeat_at=timezone.now() - timedelta(seconds=TIMEOUT + 1)
    )
    services.stop_site(a, actor=None)
    assert send("hosting.tasks.reconcile_site", str(a.pk)) == QUEUE
    wait_until(
        lambda: "Docker host engine-1 is unavailable" in central.log(),
        timeout=30,
        what="central to try engine 1",
    )
    assert observed(a) == ObservedState.RUNNING  # pending: wanted stopped, still running
    assert running(docker_endpoints[0]) == 1

    started.append(start_host_worker(tmp_path, "engine-1", docker_endpoints[0]))
    wait_until(lambda: alive(one), what="engine-1's worker to beat again")
    TaskClaim.objects.all().delete()
    send("hosting.tasks.sync_all_hosts")  # probes engine 1 if it went offline meanwhile
    send("hosting.tasks.reconcile_pending")
    wait_until(lambda: observed(a) == ObservedState.EXITED, timeout=60, what="a stopped")
    assert running(docker_endpoints[0]) == 0
