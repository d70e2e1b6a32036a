"""Deployments run by real Celery worker processes on Redis, against the test database.

A worker killed in the middle of a build must not leave its deployment "building" forever,
nor anything running on the engine; a deployment queued while no worker runs must still run
once one does; queued deployments of one site run one after the other.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditLog
from hosting import deployments, services
from hosting.models import FINAL_DEPLOYMENT_STATES, Container, Deployment, DeploymentStatus
from hosting.reconcile import converge_now
from tests.conftest import route_task
from tests.docker_engines import TEST_IMAGE
from tests.factories import make_org
from tests.integration import processes
from tests.integration.git_repos import Repo
from tests.integration.processes import send, start_worker, wait_until
from tests.integration.test_deployments import (
    SERVE,
    build_processes,
    dockerfile,
    engine_containers,
    full_log,
    http_get,
    refuses,
    status_of,
    wait_http,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

S = DeploymentStatus
WORKER_ENV = {
    "DEPLOY_ALLOW_FILE_REPOSITORIES": "true",
    "HOSTPANEL_STATIC_IMAGE": TEST_IMAGE,
    "DEPLOY_HEARTBEAT_SECONDS": "1",
    "DEPLOY_BUILD_MEMORY_MB": "256",
    "DEPLOY_HEALTH_TIMEOUT_SECONDS": "15",
}


@pytest.fixture
def procs(tmp_path):
    started: list[processes.Process] = []

    class Starter:
        def worker(self, **env):
            started.append(start_worker(tmp_path, **{**WORKER_ENV, **env}))
            return started[-1]

    yield Starter()
    for proc in started:
        proc.stop()
        print(f"----- {proc.name} -----\n{proc.log()[-4000:]}")  # shown when the test failed


@pytest.fixture(autouse=True)
def deploy_settings(settings):
    settings.DEPLOY_ALLOW_FILE_REPOSITORIES = True
    settings.DEPLOY_HEARTBEAT_SECONDS = 1
    settings.DEPLOY_BUILD_MEMORY_MB = 256
    return settings


@pytest.fixture
def lost_messages(monkeypatch) -> list[str]:
    """This process's broker is not the workers': record the messages instead of sending."""
    sent: list[str] = []
    route_task(monkeypatch, "run_deployment", lambda pk: sent.append(uuid.UUID(pk)))
    return sent


@pytest.fixture
def site_v1(tmp_path, owner, docker_host, lost_messages):
    """A static site at v1, deployed in this process and answering: (site, repo, port)."""
    repo = Repo(tmp_path / "repo")
    repo.commit("v1", {"index.html": "<h1>version one</h1>\n"})
    org = make_org(owner, "Acme", slug="acme")
    site = converge_now(
        services.create_site(
            org,
            actor=owner,
            name="Blog",
            site_type="static",
            repository_url=repo.url,
            limits={"memory_mb": 64, "cpu_percent": 50},
        )
    )
    first = deployments.request_deployment(site, actor=owner, trigger="api")
    assert deployments.execute(first.pk, worker="test") == "succeeded", full_log(first)
    port = services.current_container(site).port
    assert b"version one" in wait_http(port)
    return site, repo, port


def _orphans(tag: str, docker_host) -> str:
    return (
        f"build processes: {list(build_processes(tag, docker_host).values())}; "
        f"containers: {[c.name for c in engine_containers(docker_host)]}"
    )


def test_worker_killed_during_build_is_reaped_and_leaves_nothing_running(
    broker, procs, site_v1, owner, docker_host, deploy_settings
):
    from hosting.tasks import run_deployment

    site, repo, port = site_v1
    repo.commit("long build", {"Dockerfile": dockerfile("RUN echo long-step && sleep 60", SERVE)})
    worker = procs.worker(concurrency=1)
    d = deployments.request_deployment(site, actor=owner, trigger="api")
    tag = f"hostpanel/acme-blog:{d.number}"
    send(run_deployment, str(d.pk))
    wait_until(lambda: status_of(d) == S.BUILDING, timeout=60, what="the worker to build")
    # The RUN step's container exists: the build is in its long step.
    wait_until(lambda: len(engine_containers(docker_host)) == 2, timeout=30, what="RUN step")
    assert build_processes(tag, docker_host), "the build runs as a docker CLI process"
    time.sleep(1.5)
    d.refresh_from_db()
    assert d.worker.startswith("worker-")
    assert d.heartbeat_at > timezone.now() - timedelta(seconds=3)  # beating while alive
    # The build's context is the worker's clone, in the deployment's work directory.
    workdirs = {Path(cmd.split()[-1]).parent for cmd in build_processes(tag, docker_host).values()}
    assert all(p.name.startswith("hp-deploy-") for p in workdirs), workdirs

    worker.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    deploy_settings.DEPLOY_STALE_SECONDS = 3
    try:
        time.sleep(4)
        reaped = deployments.reap()

        assert reaped["reaped"] == 1
        d.refresh_from_db()
        assert d.status == S.FAILED
        assert "stopped responding" in d.error
        assert [t["status"] for t in d.transitions][-2:] == ["building", "failed"]
        finish = AuditLog.objects.get(action="deployment.finish", target_id=str(d.pk))
        assert finish.changes["status"]["after"] == "failed"
        assert deployments.reap()["reaped"] == 0  # once
        assert b"version one" in http_get(port)
        assert [c.port for c in Container.objects.filter(site=site)] == [port]

        # The site is not stuck: its next deployment runs.
        repo.commit("v3", {"index.html": "<h1>version three</h1>\n"}, remove=("Dockerfile",))
        nxt = deployments.request_deployment(site, actor=owner, trigger="api")
        assert deployments.execute(nxt.pk, worker="test") == "succeeded", full_log(nxt)
        assert b"version three" in http_get(services.current_container(site).port)

        # Nothing of the dead worker's build goes on: no build process, no build container
        # (only the site's container is left), and its clone is not left on disk.
        wait_until(
            lambda: (
                not build_processes(tag, docker_host) and len(engine_containers(docker_host)) == 1
            ),
            timeout=max(1.0, 25 - (time.monotonic() - killed_at)),
            what=f"the dead worker's build to stop ({_orphans(tag, docker_host)})",
        )
        leftover = [str(p) for p in workdirs if p.exists()]
        assert not leftover, f"the dead worker's clone is still on disk: {leftover}"
    finally:
        # The orphaned `docker build` is a child of the worker this test started.
        for pid in build_processes(tag, docker_host):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for path in workdirs:
            shutil.rmtree(path, ignore_errors=True)
        # Its client gone, the engine removes the build container itself: let it, before
        # the fixture's teardown removes what is left.
        wait_until(
            lambda: all(c.name.startswith("hp-") for c in engine_containers(docker_host)),
            timeout=30,
            what="the engine to drop the build container",
        )


def test_deployment_queued_while_no_worker_ran_runs_after_a_worker_starts(
    broker, procs, site_v1, owner, lost_messages
):
    from hosting.tasks import reap_deployments

    site, repo, old_port = site_v1
    repo.commit("v2", {"index.html": "<h1>version two</h1>\n"})
    d = deployments.request_deployment(site, actor=owner, trigger="api")
    assert lost_messages[-1] == d.pk  # sent to no worker: as good as lost
    time.sleep(1.5)  # older than the workers' DEPLOY_STALE_SECONDS

    procs.worker(DEPLOY_STALE_SECONDS="1")
    send(reap_deployments)

    wait_until(
        lambda: status_of(d) in FINAL_DEPLOYMENT_STATES,
        timeout=90,
        what="the re-sent deployment to run",
    )
    d.refresh_from_db()
    assert d.status == S.SUCCEEDED, (d.error, full_log(d))
    assert d.worker.startswith("worker-")
    new_port = services.current_container(site).port
    assert wait_http(new_port) == b"<h1>version two</h1>\n"
    assert new_port != old_port
    # The worker's retire task stops the replaced container once its drain time is over.
    wait_until(lambda: refuses(old_port), timeout=30, what="the old container to be retired")


def test_a_worker_runs_queued_deployments_of_a_site_one_after_the_other(
    broker, procs, site_v1, owner, docker_host, monkeypatch
):
    from hosting.tasks import run_deployment

    site, repo, _port = site_v1
    # From now on requests reach the workers' broker, as they do in production.
    route_task(
        monkeypatch,
        "run_deployment",
        lambda deployment_id: send(run_deployment, str(deployment_id)),
    )
    procs.worker(concurrency=2, DEPLOY_DRAIN_SECONDS="1")
    repo.commit("v2", {"Dockerfile": dockerfile("COPY . /www", "RUN sleep 2", SERVE)})
    second = deployments.request_deployment(site, actor=owner, trigger="api")
    repo.commit("v3", {"index.html": "<h1>version three</h1>\n"})
    third = deployments.request_deployment(site, actor=owner, trigger="api")

    wait_until(
        lambda: status_of(third) in FINAL_DEPLOYMENT_STATES,
        timeout=120,
        what="both deployments to run",
    )
    second.refresh_from_db()
    third.refresh_from_db()
    assert (second.status, third.status) == (S.SUCCEEDED, S.SUCCEEDED), (
        second.error,
        third.error,
    )
    assert third.started_at >= second.finished_at  # never two at once
    # The old containers leave after each switch, by the retire task the worker sent itself
    # with the drain time as its countdown: in the end only the newest runs.
    wait_until(
        lambda: len(engine_containers(docker_host)) == 1, timeout=30, what="old containers to go"
    )
    assert engine_containers(docker_host)[0].id == services.current_container(site).docker_id
    [switch] = AuditLog.objects.filter(action="deployment.finish", target_id=str(third.pk))
    [replaced] = switch.changes["retired"]
    [retire] = [
        e
        for e in AuditLog.objects.filter(action="container.retire", target_id=str(site.pk))
        if e.changes["container"] == replaced
    ]
    assert retire.timestamp >= third.finished_at + timedelta(seconds=1)  # after the drain
    assert third.commit_hash == repo.git("rev-parse", "HEAD")
    assert b"version three" in wait_http(services.current_container(site).port)
    assert Deployment.objects.filter(site=site, status=S.QUEUED).count() == 0
