"""Deployments for real: git repositories made in the test, a real Docker engine, HTTP.

`deployments.execute` runs in this process (the Celery task only calls it); everything runs
with committed data (transaction=True) because the pipeline's heartbeat, and the threads
that cancel, read logs or poll the site while a deployment runs, use connections of their
own. Task `run_deployment` is routed to a list: no message goes to a broker, and the test sees which
deployment the pipeline asks to run next.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import docker.errors
import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from audit.models import AuditLog
from hosting import deployments, services
from hosting import docker as engine
from hosting.models import (
    FINAL_DEPLOYMENT_STATES,
    Container,
    Deployment,
    DeploymentStatus,
    EnvironmentVariable,
    ResourceLimit,
    Site,
)
from hosting.reconcile import converge_now
from tests.conftest import route_task
from tests.docker_engines import TEST_IMAGE

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

S = DeploymentStatus
HAPPY_PATH = ["queued", "cloning", "building", "starting", "healthy", "succeeded"]
SERVE = 'CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]'
SLOW_BOOT = 'CMD ["sh", "-c", "sleep 2; exec httpd -f -p $PORT -h /www"]'


# --- helpers ----------------------------------------------------------------------------------


def dockerfile(*lines: str) -> str:
    """A Dockerfile on the test image; its nonce label keeps the engine's build cache (the
    engines outlive a test run) from replaying the steps instead of running them."""
    nonce = f"LABEL test.nonce={uuid.uuid4().hex}"
    return "\n".join([f"FROM {TEST_IMAGE}", nonce, *lines]) + "\n"


def served_dockerfile(*run_lines: str, cmd: str = SERVE) -> str:
    return dockerfile("COPY www /www", *run_lines, cmd)


def http_get(port: int, path: str = "/", timeout: float = 1.0) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.read()


def wait_http(port: int, path: str = "/", timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(port, path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def refuses(port: int) -> bool:
    try:
        http_get(port, timeout=0.5)
    except OSError:
        return True
    return False


def engine_containers(host) -> list:
    """Every container on the engine, inspected. A build step's container can go between the
    listing and its inspection (docker-py inspects each one): then it lists again."""
    for _ in range(5):
        try:
            return engine.client(host).containers.list(all=True)
        except docker.errors.NotFound:
            time.sleep(0.05)
    return engine.client(host).containers.list(all=True)


def build_processes(tag: str, host) -> dict[int, str]:
    """pid -> command line of the `docker -H <host> ... build ... -t <tag>` processes alive
    (on this host's engine only: other runs on this machine build the same tags)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if "build" in words and tag in words and host.endpoint in words:
            found[int(entry.name)] = " ".join(words)
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def status_of(deployment: Deployment) -> str:
    return Deployment.objects.values_list("status", flat=True).get(pk=deployment.pk)


def full_log(deployment: Deployment) -> str:
    return "".join(chunk["text"] for chunk in deployments.read_log(deployment)["chunks"])


def transition_time(deployment: Deployment, status: str) -> float:
    for step in deployment.transitions:
        if step["status"] == status:
            return datetime.fromisoformat(step["at"]).timestamp()
    raise AssertionError(f"no {status} in {deployment.transitions}")


class InThread(threading.Thread):
    """Runs `target` with a database connection of its own; keeps its result or error."""

    def __init__(self, target, *args):
        super().__init__(daemon=True)
        self._target_fn, self._args = target, args
        self.result = self.error = None

    def run(self) -> None:
        try:
            self.result = self._target_fn(*self._args)
        except BaseException as exc:  # re-raised in the test by join_result
            self.error = exc
        finally:
            connection.close()

    def join_result(self, timeout: float = 120):
        self.join(timeout)
        assert not self.is_alive(), "thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def deploy_settings(settings):
    settings.DEPLOY_ALLOW_FILE_REPOSITORIES = True
    settings.DEPLOY_HEALTH_TIMEOUT_SECONDS = 10
    settings.DEPLOY_BUILD_TIMEOUT_SECONDS = 120
    settings.DEPLOY_HEARTBEAT_SECONDS = 1
    settings.DEPLOY_BUILD_MEMORY_MB = 256
    return settings


def deploy(site: Site, actor) -> tuple[str, Deployment]:
    deployment = deployments.request_deployment(site, actor=actor, trigger="api")
    result = deployments.execute(deployment.pk, worker="test")
    deployment.refresh_from_db()
    return result, deployment


def current_port(site: Site) -> int:
    return services.current_container(site).port


def site_containers(site: Site) -> list[Container]:
    return list(Container.objects.filter(site=site))


@pytest.fixture
def live_site(make_site, repo, owner, docker_host):
    """A static site at v1, deployed and answering; returns (site, port, v1 deployment)."""
    repo.commit("v1", {"index.html": "<h1>version one</h1>\n"})
    site = make_site(repo)
    result, first = deploy(site, owner)
    assert result == "succeeded", full_log(first)
    port = current_port(site)
    assert b"version one" in wait_http(port)
    assert len(engine_containers(docker_host)) == 1
    return site, port, first


def assert_still_serving_v1(site: Site, port: int, docker_host) -> None:
    assert current_port(site) == port
    assert b"version one" in http_get(port)
    assert [c.port for c in site_containers(site)] == [port]
    [only] = engine_containers(docker_host)
    assert only.id == services.current_container(site).docker_id
    assert only.status == "running"


# --- the happy paths --------------------------------------------------------------------------


def test_static_site_deploys_and_serves_the_repositorys_html(make_site, repo, owner, docker_host):
    commit = repo.commit(
        "Landing page\n\nFirst cut of the site.",
        {"index.html": "<h1>hello from git</h1>\n", "about/index.html": "about us\n"},
    )
    site = make_site(repo)
    before = services.current_container(site)
    assert b"hostpanel test site" in wait_http(before.port)  # the image's placeholder page

    result, d = deploy(site, owner)

    assert result == "succeeded", full_log(d)
    assert d.status == S.SUCCEEDED
    assert d.commit_hash == commit
    assert d.commit_message == "Landing page\n\nFirst cut of the site."
    assert d.branch == "main"
    assert d.trigger == "api"
    assert d.triggered_by == owner
    assert d.worker == "test"
    assert d.error == ""
    assert [t["status"] for t in d.transitions] == HAPPY_PATH
    times = [datetime.fromisoformat(t["at"]) for t in d.transitions]
    assert times == sorted(times)
    assert d.started_at is not None and d.finished_at is not None
    assert d.started_at <= d.finished_at
    assert 0 < d.build_time_seconds < 120
    assert d.image_tag == f"hostpanel/acme-blog:{d.number}"
    assert d.image_id == engine.image_id(docker_host, d.image_tag)
    assert d.config_snapshot["limits"]["memory_mb"] == 64

    new = services.current_container(site)
    assert new.deployment_id == d.pk
    assert wait_http(new.port) == b"<h1>hello from git</h1>\n"
    assert wait_http(new.port, "/about/") == b"about us\n"
    # The placeholder container was replaced, on the engine and in the database.
    assert [c.id for c in engine_containers(docker_host)] == [new.docker_id]
    assert site_containers(site) == [new]
    site.refresh_from_db()
    assert site.deployed_image == d.image_tag
    assert site.observed_state == "running"

    audit = AuditLog.objects.filter(target_id=str(d.pk))
    assert audit.filter(action="deployment.create").count() == 1
    progress = [e.changes["status"]["after"] for e in audit.filter(action="deployment.progress")]
    assert sorted(progress) == sorted(["cloning", "building", "starting", "healthy"])
    [finish] = audit.filter(action="deployment.finish")
    assert finish.changes["status"] == {"before": "healthy", "after": "succeeded"}
    log = full_log(d)
    assert commit in log
    assert "Successfully tagged" in log
    assert "==> healthy; switching traffic" in log
    assert f"deployment #{d.number} succeeded" in log
    stages = [c["stage"] for c in deployments.read_log(d)["chunks"]]
    assert {"cloning", "building", "starting"} <= set(stages)


def test_static_site_does_not_serve_the_git_directory(live_site):
    """The generated static Dockerfile copies the clone, .git included, into the web root:
    /.git/config names the repository URL (with its credentials when it has any)."""
    _site, port, _first = live_site
    assert b"version one" in http_get(port)
    with pytest.raises(urllib.error.HTTPError) as error:
        http_get(port, "/.git/config")
    assert error.value.code == 404


def test_dockerfile_site_deploys_with_the_repositorys_dockerfile(
    make_site, repo, owner, docker_host
):
    commit = repo.commit(
        "Dockerfile app",
        {
            "Dockerfile": served_dockerfile("RUN echo built-by-dockerfile > /www/built.txt"),
            "www/index.html": "<h1>dockerfile site</h1>\n",
        },
    )
    site = make_site(
        repo, site_type="docker", image=TEST_IMAGE, desired_state="stopped", name="App"
    )
    assert site_containers(site) == []

    result, d = deploy(site, owner)

    assert result == "succeeded", full_log(d)
    assert d.commit_hash == commit
    assert [t["status"] for t in d.transitions] == HAPPY_PATH
    assert "from Dockerfile\n" in full_log(d)
    container = services.current_container(site)
    assert wait_http(container.port) == b"<h1>dockerfile site</h1>\n"
    assert wait_http(container.port, "/built.txt") == b"built-by-dockerfile\n"
    info = engine.inspect(docker_host, container.docker_id)
    assert info["Config"]["Image"] == d.image_tag
    assert info["Config"]["Labels"][engine.LABEL_DEPLOYMENT] == str(d.pk)
    assert info["Config"]["Labels"][engine.LABEL_SITE] == str(site.pk)
    assert f"PORT={container.port}" in info["Config"]["Env"]
    host_config = info["HostConfig"]
    assert host_config["Memory"] == 64 * 2**20
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["CapDrop"] == ["ALL"]
    assert host_config["Privileged"] is False
    site.refresh_from_db()
    assert site.desired_state == "running"
    assert site.observed_state == "running"


# --- zero downtime ----------------------------------------------------------------------------


class Poller(threading.Thread):
    """GETs, back to back, the old container's port and the port the panel names as the
    site's current one (services.current_container), recording every answer."""

    def __init__(self, site: Site, old_port: int):
        super().__init__(daemon=True)
        self.site, self.old_port = site, old_port
        self.stop = threading.Event()
        self.old: list[tuple[float, bool, bytes]] = []
        self.current: list[tuple[float, int, bool, bytes, bool]] = []

    def _get(self, port: int) -> tuple[bool, bytes]:
        try:
            return True, http_get(port, timeout=2)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, cut short
            return False, repr(exc).encode()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                at = time.time()
                self.old.append((at, *self._get(self.old_port)))
                port = current_port(self.site)
                ok, body = self._get(port)
                # A request cut by the switch itself (the port it was sent to stopped being
                # the current one meanwhile) is told apart from a current port not answering.
                switched = not ok and current_port(self.site) != port
                self.current.append((at, port, ok, body, switched))
                time.sleep(0.02)
        finally:
            connection.close()


def _second_deploy_with_slow_boot(live_site, repo, owner):
    """v2 takes two seconds to listen after its container starts, as real apps do."""
    site, old_port, _first = live_site
    repo.commit(
        "v2",
        {
            "Dockerfile": served_dockerfile(cmd=SLOW_BOOT),
            "www/index.html": "<h1>version two</h1>\n",
        },
    )
    poller = Poller(site, old_port)
    poller.start()
    time.sleep(0.3)
    try:
        result, second = deploy(site, owner)
    finally:
        time.sleep(0.3)
        poller.stop.set()
        poller.join(30)
    return site, old_port, second, result, poller


def test_second_deploy_keeps_the_old_container_answering_until_the_new_one_is_healthy(
    live_site, repo, owner, docker_host
):
    site, old_port, second, result, poller = _second_deploy_with_slow_boot(live_site, repo, owner)

    assert result == "succeeded", full_log(second)
    healthy_at = transition_time(second, "healthy")
    before_healthy = [(ok, body) for at, ok, body in poller.old if at < healthy_at]
    assert len(before_healthy) > 20  # the build and the 2 s boot were really covered
    assert all(ok and b"version one" in body for ok, body in before_healthy), before_healthy[-5:]

    new = services.current_container(site)
    assert new.port != old_port
    assert new.deployment_id == second.pk
    assert http_get(new.port) == b"<h1>version two</h1>\n"
    assert refuses(old_port)
    assert [c.id for c in engine_containers(docker_host)] == [new.docker_id]
    assert site_containers(site) == [new]


def test_the_sites_current_port_answers_throughout_a_deploy(live_site, repo, owner):
    """What the panel names as the site's container (services.current_container, the newest
    row) must be one that answers: the new container only once it is healthy."""
    site, _old_port, second, result, poller = _second_deploy_with_slow_boot(live_site, repo, owner)

    assert result == "succeeded", full_log(second)
    assert len(poller.current) > 20
    unanswered = [
        (round(at - poller.current[0][0], 2), port, body)
        for at, port, ok, body, switched in poller.current
        if not ok and not switched
    ]
    assert not unanswered, unanswered[:5]
    new_port = current_port(site)
    answered_by_new = [body for _at, port, ok, body, _ in poller.current if ok and port == new_port]
    assert answered_by_new and all(b"version two" in b for b in answered_by_new)


# --- the replaced container: drain, graceful stop, removal ------------------------------------


def stop_signals(host, docker_id: str, since: float) -> list[str]:
    """The signals the engine sent the container since `since`, from its event stream."""
    events = engine.client(host).events(
        since=int(since), until=int(time.time()) + 1, filters={"container": docker_id}, decode=True
    )
    return [e["Actor"]["Attributes"]["signal"] for e in events if e.get("Action") == "kill"]


def _deploy_keeping_the_old_one(site, repo, owner, monkeypatch, files):
    """Deploy with the retire task captured instead of run (as it waits out the drain)."""
    scheduled: list[list[str]] = []
    route_task(monkeypatch, "retire_containers", scheduled.append)
    old = services.current_container(site)
    repo.commit("v2", files)
    result, second = deploy(site, owner)
    assert result == "succeeded", full_log(second)
    return old, second, scheduled


def test_switch_retires_the_old_container_which_drains_then_stops_on_sigterm(
    live_site, repo, owner, docker_host, monkeypatch, settings
):
    site, old_port, _first = live_site
    since = time.time()
    old, second, scheduled = _deploy_keeping_the_old_one(
        site, repo, owner, monkeypatch, {"index.html": "<h1>version two</h1>\n"}
    )

    # The deployment is over at the switch: the new container serves, the old one is retired
    # (no longer the site's) but still answers requests already sent to it.
    assert scheduled == [[str(old.pk)]]
    old.refresh_from_db()
    assert old.retired_at is not None
    new = services.current_container(site)
    assert new.deployment_id == second.pk
    assert list(services.serving_containers(site)) == [new]
    assert b"version one" in http_get(old_port)
    assert b"version two" in http_get(new.port)
    [finish] = AuditLog.objects.filter(target_id=str(second.pk), action="deployment.finish")
    assert finish.changes["retired"] == [old.name]

    settings.DEPLOY_STOP_TIMEOUT_SECONDS = 5
    started = time.monotonic()
    assert deployments.retire_containers(scheduled[0]) == 1
    took = time.monotonic() - started

    assert took < 4, "httpd exits on SIGTERM: the stop must not wait for the kill"
    assert stop_signals(docker_host, old.docker_id, since) == ["15"]
    assert refuses(old_port)
    assert [c.id for c in engine_containers(docker_host)] == [new.docker_id]
    assert site_containers(site) == [new]
    retired = AuditLog.objects.filter(action="container.retire", target_id=str(site.pk))
    # The placeholder container the first deployment replaced, then v1's.
    assert [e.changes["container"] for e in retired.order_by("timestamp")][-1] == old.name
    assert deployments.retire_containers(scheduled[0]) == 0  # idempotent: a redelivery


def test_a_replaced_container_that_ignores_sigterm_is_killed_after_the_stop_timeout(
    make_site, repo, owner, docker_host, monkeypatch, settings
):
    # PID 1 is a shell ignoring TERM; httpd runs in the background.
    stubborn = (
        'CMD ["sh", "-c", "trap \'\' TERM; httpd -p $PORT -h /www; while true; do sleep 1; done"]'
    )
    repo.commit("v1", {"Dockerfile": served_dockerfile(cmd=stubborn), "www/index.html": "one"})
    site = make_site(repo, site_type="docker", image=TEST_IMAGE, desired_state="stopped")
    result, first = deploy(site, owner)
    assert result == "succeeded", full_log(first)
    since = time.time()
    old, _second, scheduled = _deploy_keeping_the_old_one(
        site, repo, owner, monkeypatch, {"www/index.html": "two"}
    )

    settings.DEPLOY_STOP_TIMEOUT_SECONDS = 1
    started = time.monotonic()
    assert deployments.retire_containers(scheduled[0]) == 1

    assert time.monotonic() - started >= 1
    assert stop_signals(docker_host, old.docker_id, since) == ["15", "9"]
    assert not Container.objects.filter(pk=old.pk).exists()
    assert len(engine_containers(docker_host)) == 1


def test_reaper_retires_replaced_containers_whose_task_was_lost(
    live_site, repo, owner, docker_host, monkeypatch, settings
):
    site, old_port, _first = live_site
    old, _second, _scheduled = _deploy_keeping_the_old_one(
        site, repo, owner, monkeypatch, {"index.html": "<h1>version two</h1>\n"}
    )
    settings.DEPLOY_DRAIN_SECONDS = 2
    settings.DEPLOY_STOP_TIMEOUT_SECONDS = 10
    # Within its drain and stop time, and the reaper's minute of slack, it is left alone...
    assert deployments.reap()["retired"] == 0
    assert b"version one" in http_get(old_port)

    # ...past them, the message counts as lost and the reaper retires it.
    old.refresh_from_db()
    Container.objects.filter(pk=old.pk).update(retired_at=old.retired_at - timedelta(seconds=73))
    assert deployments.reap()["retired"] == 1

    assert refuses(old_port)
    assert not Container.objects.filter(pk=old.pk).exists()
    assert len(engine_containers(docker_host)) == 1


# --- failures keep the old version serving ----------------------------------------------------


def test_failing_build_fails_with_reason_and_old_version_keeps_serving(
    live_site, repo, owner, docker_host
):
    site, port, first = live_site
    repo.commit(
        "broken build",
        {"Dockerfile": dockerfile("RUN echo about-to-break && false", SERVE)},
    )

    result, d = deploy(site, owner)

    assert result == "failed"
    assert d.status == S.FAILED
    assert "docker build exited with status" in d.error
    assert [t["status"] for t in d.transitions][-1] == "failed"
    assert d.finished_at is not None
    log = full_log(d)
    assert "about-to-break" in log
    assert "==> failed: docker build exited with status" in log
    assert_still_serving_v1(site, port, docker_host)  # and no build container left
    site.refresh_from_db()
    assert site.deployed_image == first.image_tag
    finish = AuditLog.objects.get(action="deployment.finish", target_id=str(d.pk))
    assert finish.changes["status"]["after"] == "failed"
    assert "docker build exited" in finish.changes["error"]


def test_failing_health_check_fails_removes_the_new_container_and_old_keeps_serving(
    live_site, repo, owner, docker_host, deploy_settings
):
    deploy_settings.DEPLOY_HEALTH_TIMEOUT_SECONDS = 3
    site, port, first = live_site
    repo.commit("listens nowhere", {"Dockerfile": dockerfile('CMD ["sleep", "600"]')})

    started = time.monotonic()
    result, d = deploy(site, owner)
    elapsed = time.monotonic() - started

    assert result == "failed", full_log(d)
    assert "health check" in d.error and "failed for 3s" in d.error
    assert [t["status"] for t in d.transitions][-2:] == ["starting", "failed"]
    assert 3 <= elapsed < 20
    assert "==> failed: The health check" in full_log(d)
    assert not Container.objects.filter(deployment=d).exists()
    assert_still_serving_v1(site, port, docker_host)
    site.refresh_from_db()
    assert site.deployed_image == first.image_tag


def test_container_that_exits_at_once_fails_the_deploy_promptly_with_its_output(
    live_site, repo, owner, docker_host, deploy_settings
):
    """A new container that crashes is not worth the whole health timeout: it fails the
    deployment when it exits, and what it printed (the start output) is in the log."""
    deploy_settings.DEPLOY_HEALTH_TIMEOUT_SECONDS = 20
    site, port, _first = live_site
    repo.commit(
        "crashes", {"Dockerfile": dockerfile('CMD ["sh", "-c", "echo crashing-on-boot; exit 3"]')}
    )

    started = time.monotonic()
    result, d = deploy(site, owner)
    elapsed = time.monotonic() - started

    assert result == "failed", full_log(d)
    assert not Container.objects.filter(deployment=d).exists()
    assert_still_serving_v1(site, port, docker_host)
    assert elapsed < 12, f"waited the whole health timeout: {d.error}"
    assert "crashing-on-boot" in full_log(d)


# --- cancel and timeouts ----------------------------------------------------------------------


def _run_and_act_when(deployment: Deployment, status: str, act, settle: float = 1.0):
    """Execute in this thread; from another one, once the status is reached, call act()."""

    def actor_thread():
        wait_for(lambda: status_of(deployment) == status, 60, f"status {status}", 0.05)
        time.sleep(settle)
        return act(), time.monotonic()

    helper = InThread(actor_thread)
    helper.start()
    result = deployments.execute(deployment.pk, worker="test")
    ended = time.monotonic()
    acted, acted_at = helper.join_result()
    deployment.refresh_from_db()
    return result, acted, ended - acted_at


def test_cancel_during_build_stops_the_build_and_old_keeps_serving(
    live_site, repo, owner, docker_host, enqueued
):
    site, port, _first = live_site
    repo.commit("slow build", {"Dockerfile": dockerfile("RUN echo sleeping && sleep 30", SERVE)})
    d = deployments.request_deployment(site, actor=owner, trigger="api")

    result, cancelled, delay = _run_and_act_when(
        d, S.BUILDING, lambda: deployments.cancel(d, actor=owner), settle=1.5
    )

    assert cancelled.cancel_requested is True
    assert result == "cancelled"
    assert d.status == S.CANCELLED
    assert delay < 5, delay
    assert "cancelled during the build" in d.error
    assert [t["status"] for t in d.transitions] == ["queued", "cloning", "building", "cancelled"]
    assert "sleeping" in full_log(d)
    assert AuditLog.objects.filter(action="deployment.cancel", target_id=str(d.pk)).exists()
    assert build_processes(f"hostpanel/acme-blog:{d.number}", docker_host) == {}
    # The engine drops the build's container once its client is gone.
    wait_for(lambda: len(engine_containers(docker_host)) == 1, 15, "the build container to go")
    assert_still_serving_v1(site, port, docker_host)


def test_cancel_while_waiting_for_health_removes_the_new_container(
    live_site, repo, owner, docker_host, deploy_settings
):
    deploy_settings.DEPLOY_HEALTH_TIMEOUT_SECONDS = 60
    site, port, _first = live_site
    repo.commit("never healthy", {"Dockerfile": dockerfile('CMD ["sleep", "600"]')})
    d = deployments.request_deployment(site, actor=owner, trigger="api")

    result, _, delay = _run_and_act_when(d, S.STARTING, lambda: deployments.cancel(d, actor=owner))

    assert result == "cancelled"
    assert d.status == S.CANCELLED
    assert delay < 5, delay
    assert not Container.objects.filter(deployment=d).exists()
    assert_still_serving_v1(site, port, docker_host)


def test_cancel_of_a_queued_deployment_is_immediate_and_the_next_one_is_sent(
    live_site, repo, owner, enqueued
):
    site, _port, _first = live_site
    first = deployments.request_deployment(site, actor=owner, trigger="api")
    second = deployments.request_deployment(site, actor=owner, trigger="api")
    enqueued.clear()

    cancelled = deployments.cancel(first, actor=owner)

    assert cancelled.status == S.CANCELLED
    assert cancelled.error == "Cancelled before it started."
    assert enqueued == [second.pk]
    assert deployments.execute(first.pk, worker="test") == "not started (cancelled)"
    assert deployments.execute(second.pk, worker="test") == "succeeded"
    with pytest.raises(ValidationError, match="already ended"):
        deployments.cancel(cancelled, actor=owner)


def test_build_longer_than_its_timeout_is_timed_out(
    live_site, repo, owner, docker_host, deploy_settings
):
    deploy_settings.DEPLOY_BUILD_TIMEOUT_SECONDS = 3
    site, port, _first = live_site
    repo.commit("endless build", {"Dockerfile": dockerfile("RUN sleep 30", SERVE)})

    started = time.monotonic()
    result, d = deploy(site, owner)
    elapsed = time.monotonic() - started

    assert result == "timed_out"
    assert d.status == S.TIMED_OUT
    assert "longer than 3s" in d.error
    assert elapsed < 15, elapsed
    assert build_processes(f"hostpanel/acme-blog:{d.number}", docker_host) == {}
    wait_for(lambda: len(engine_containers(docker_host)) == 1, 15, "the build container to go")
    assert_still_serving_v1(site, port, docker_host)


# --- logs -------------------------------------------------------------------------------------


class LogReader(threading.Thread):
    """Polls read_log(after=...) like the page does, until the deployment ends."""

    def __init__(self, deployment: Deployment):
        super().__init__(daemon=True)
        self.deployment = deployment
        self.polls: list[tuple[float, str, str]] = []  # (time, status at the poll, new text)
        self.text = ""
        self.offsets: list[int] = []

    def run(self) -> None:
        after = -1
        try:
            while True:
                status = status_of(self.deployment)
                page = deployments.read_log(self.deployment, after=after)
                new = "".join(c["text"] for c in page["chunks"])
                self.offsets += [c["offset"] for c in page["chunks"]]
                self.text += new
                self.polls.append((time.monotonic(), status, new))
                after = page["next_after"]
                if status in FINAL_DEPLOYMENT_STATES:
                    return
                time.sleep(0.2)
        finally:
            connection.close()

    def first_seen(self, needle: str) -> tuple[float, str] | None:
        text = ""
        for at, status, new in self.polls:
            text += new
            if needle in text:
                return at, status
        return None


def test_build_log_is_readable_while_the_build_runs(live_site, repo, owner):
    site, _port, _first = live_site
    repo.commit(
        "chatty build",
        {"Dockerfile": dockerfile("RUN for i in 1 2 3 4 5; do echo step$i; sleep 1; done", SERVE)},
    )
    d = deployments.request_deployment(site, actor=owner, trigger="api")
    reader = LogReader(d)
    reader.start()

    result = deployments.execute(d.pk, worker="test")
    ended = time.monotonic()
    reader.join(30)

    assert result == "succeeded"
    seen = reader.first_seen("step1")
    assert seen is not None, reader.text
    seen_at, status_then = seen
    assert status_then == "building"
    assert ended - seen_at > 1.5  # read seconds before the build ended, not at its end
    # Polling with `after` gives every chunk once, in order: it adds up to the whole log.
    assert reader.offsets == sorted(set(reader.offsets))
    assert reader.text == full_log(Deployment.objects.get(pk=d.pk))
    for i in range(1, 6):
        assert f"step{i}\n" in reader.text


def test_last_build_line_before_a_silence_is_readable_during_the_silence(live_site, repo, owner):
    """Output is flushed only when more output arrives: a line followed by a long quiet step
    (a compile, a download) stays invisible to the page until the step ends."""
    site, _port, _first = live_site
    repo.commit(
        "quiet step",
        {"Dockerfile": dockerfile("RUN echo starting; echo compiling-now; sleep 6", SERVE)},
    )
    d = deployments.request_deployment(site, actor=owner, trigger="api")
    reader = LogReader(d)
    reader.start()

    result = deployments.execute(d.pk, worker="test")
    ended = time.monotonic()
    reader.join(30)

    assert result == "succeeded"
    seen = reader.first_seen("compiling-now")
    assert seen is not None
    assert ended - seen[0] > 3, "the line appeared only when the quiet step ended"


def test_a_line_logged_inside_a_transaction_keeps_the_log_whole_and_in_order(live_site, owner):
    """The switch logs (and writes) inside its transaction, after the writer thread handed
    writing back. That must neither stall the switch (on SQLite a thread waiting for the
    write lock the switch holds would), nor lose what the thread held, nor write it after
    the switch's own lines: the log is read in offset order, and its last chunk is the tail
    that trim_old_logs keeps."""
    site, _port, _first = live_site
    d = deployments.request_deployment(site, actor=owner, trigger="api")
    out = deployments.LogWriter(d)
    out.start()
    try:
        out.set_stage("switching")
        started = time.monotonic()
        out.line("==> written before the switch")
        out.stop()  # as the pipeline does before its switch
        with transaction.atomic():
            locked = Site.objects.select_for_update(of=("self",)).get(pk=site.pk)
            locked.save(update_fields=["updated_at"])
            out.line("==> written inside the switch")
            out.flush()
        elapsed = time.monotonic() - started
    finally:
        out.close()

    log = full_log(d)
    assert "written before the switch" in log
    assert "written inside the switch" in log
    assert elapsed < 5, f"the switch waited {elapsed:.1f}s for the log"
    assert log.index("written before the switch") < log.index("written inside the switch"), log


def test_log_keeps_the_tail_when_it_exceeds_its_bound(live_site, repo, owner, deploy_settings):
    deploy_settings.DEPLOY_LOG_MAX_BYTES = 8192
    site, _port, _first = live_site
    repo.commit(
        "noisy build",
        {
            "Dockerfile": dockerfile(
                "RUN i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done", SERVE
            )
        },
    )

    result, d = deploy(site, owner)

    assert result == "succeeded"
    page = deployments.read_log(d)
    text = "".join(c["text"] for c in page["chunks"])
    assert d.log_size > 20_000
    assert page["truncated_before"] > 0
    assert len(text.encode()) < 8192 + 4096 * 2  # bound plus at most a chunk or so
    assert "line-2999\n" in text and f"deployment #{d.number} succeeded" in text
    assert "line-0\n" not in text


# --- rollback ---------------------------------------------------------------------------------


def _env_of(host, container: Container) -> dict[str, str]:
    info = engine.inspect(host, container.docker_id)
    return dict(item.split("=", 1) for item in info["Config"]["Env"])


def test_rollback_restores_image_env_and_limits(make_site, repo, owner, docker_host):
    repo.commit("v1", {"index.html": "<h1>version one</h1>\n"})
    site = make_site(repo, limits={"memory_mb": 64, "cpu_percent": 50})
    services.set_env(site, actor=owner, key="A", value="1")
    services.set_env(site, actor=owner, key="TOKEN", value="secret-one", is_secret=True)
    result, v1 = deploy(site, owner)
    assert result == "succeeded", full_log(v1)
    assert "secret-one" not in json.dumps(v1.config_snapshot)  # encrypted at rest there too
    assert _env_of(docker_host, services.current_container(site))["A"] == "1"

    a = EnvironmentVariable.objects.get(site=site, key="A")
    services.update_env(a, actor=owner, value="2")
    token = EnvironmentVariable.objects.get(site=site, key="TOKEN")
    services.update_env(token, actor=owner, value="secret-two")
    services.set_env(site, actor=owner, key="B", value="only-in-v2")
    services.update_limits(site, actor=owner, memory_mb=96, cpu_percent=25)
    converge_now(site)
    repo.commit("v2", {"index.html": "<h1>version two</h1>\n"})
    result, v2 = deploy(site, owner)
    assert result == "succeeded", full_log(v2)
    container = services.current_container(site)
    env = _env_of(docker_host, container)
    assert (env["A"], env["B"], env["TOKEN"]) == ("2", "only-in-v2", "secret-two")
    assert engine.inspect(docker_host, container.docker_id)["HostConfig"]["Memory"] == 96 * 2**20
    assert b"version two" in wait_http(container.port)

    back = deployments.request_rollback(v1, actor=owner)
    result = deployments.execute(back.pk, worker="test")
    back.refresh_from_db()

    assert result == "succeeded", full_log(back)
    assert back.trigger == "rollback"
    assert back.rollback_of == v1
    assert back.number == 3
    assert back.commit_hash == v1.commit_hash
    assert back.image_tag == v1.image_tag
    assert [t["status"] for t in back.transitions] == HAPPY_PATH
    # The site's own configuration is v1's again ...
    values = {
        v.key: services.reveal_env_value(v) for v in EnvironmentVariable.objects.filter(site=site)
    }
    assert values == {"A": "1", "TOKEN": "secret-one"}
    # ... through the services: the variables kept their ids, and each change is audited.
    assert EnvironmentVariable.objects.get(site=site, key="A").pk == a.pk
    assert EnvironmentVariable.objects.get(site=site, key="TOKEN").pk == token.pk
    audited = AuditLog.objects.filter(timestamp__gte=back.created_at).values_list(
        "action", flat=True
    )
    assert {"env.update", "env.delete", "site.limits_update"} <= set(audited)
    assert EnvironmentVariable.objects.get(site=site, key="TOKEN").is_secret is True
    limits = ResourceLimit.objects.get(site=site)
    assert (limits.memory_mb, limits.cpu_percent) == (64, 50)
    # ... and so is the container's.
    container = services.current_container(site)
    assert container.deployment_id == back.pk
    info = engine.inspect(docker_host, container.docker_id)
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    assert env["A"] == "1" and env["TOKEN"] == "secret-one" and "B" not in env
    assert info["HostConfig"]["Memory"] == 64 * 2**20
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert info["Config"]["Image"] == v1.image_tag
    assert wait_http(container.port) == b"<h1>version one</h1>\n"
    assert [c.id for c in engine_containers(docker_host)] == [container.docker_id]
    site.refresh_from_db()
    assert site.deployed_image == v1.image_tag
    assert site.needs_restart is False


def test_rollback_only_to_a_succeeded_deployment(live_site, repo, owner):
    site, _port, _first = live_site
    repo.commit("broken", {"Dockerfile": dockerfile("RUN false")})
    result, failed = deploy(site, owner)
    assert result == "failed"
    with pytest.raises(ValidationError, match="Only a succeeded deployment"):
        deployments.request_rollback(failed, actor=owner)


# --- one at a time ----------------------------------------------------------------------------


def test_one_deployment_per_site_at_a_time_and_the_queue_moves_on(live_site, repo, owner, enqueued):
    site, _port, _first = live_site
    repo.commit(
        "slowish",
        {
            "Dockerfile": served_dockerfile("RUN sleep 3"),
            "www/index.html": "<h1>version two</h1>\n",
        },
    )
    first = deployments.request_deployment(site, actor=owner, trigger="api")
    second = deployments.request_deployment(site, actor=owner, trigger="api")
    assert (first.status, second.status) == ("queued", "queued")
    # The older one goes first, even when the newer one's message arrives first.
    assert deployments.execute(second.pk, worker="test") == "not started (queued)"
    enqueued.clear()

    running = InThread(deployments.execute, first.pk, "test")
    running.start()
    wait_for(lambda: status_of(first) == S.BUILDING, 30, "the first to build")

    assert deployments.execute(second.pk, worker="other") == "not started (queued)"
    assert deployments.execute(first.pk, worker="other") == "not started (building)"
    assert status_of(second) == S.QUEUED

    assert running.join_result() == "succeeded"
    assert enqueued == [second.pk]  # the finished one sends the next
    assert deployments.execute(second.pk, worker="test") == "succeeded"
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.worker == "test" and second.worker == "test"
    assert second.started_at >= first.finished_at
    assert b"version two" in http_get(current_port(site))


def test_two_workers_given_the_same_deployment_run_it_once(make_site, repo, owner, docker_host):
    """A redelivered message: both executions race for the claim; one runs, one does not."""
    repo.commit("v1", {"index.html": "<h1>version one</h1>\n"})
    site = make_site(repo)
    d = deployments.request_deployment(site, actor=owner, trigger="api")
    barrier = threading.Barrier(2)

    def run(worker):
        barrier.wait()
        return deployments.execute(d.pk, worker=worker)

    threads = [InThread(run, name) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    results = sorted(thread.join_result() for thread in threads)

    assert results[1] == "succeeded"
    assert results[0].startswith("not started (")
    d.refresh_from_db()
    assert [t["status"] for t in d.transitions] == HAPPY_PATH
    assert len(engine_containers(docker_host)) == 1


def test_build_runs_bounded_and_without_network(live_site, repo, owner, deploy_settings):
    deploy_settings.DEPLOY_BUILD_MEMORY_MB = 200
    deploy_settings.DEPLOY_BUILD_CPU_PERCENT = 50
    site, _port, _first = live_site
    probe = (
        "RUN echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
        " || cat /sys/fs/cgroup/memory.max)"
        " && echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null"
        " || cut -d' ' -f1 /sys/fs/cgroup/cpu.max)"
        " && echo nets=$(ls /sys/class/net | tr '\\n' ,)"
    )
    repo.commit("probe", {"Dockerfile": dockerfile(probe, SERVE)})

    result, d = deploy(site, owner)

    assert result == "succeeded", full_log(d)
    log = full_log(d)
    assert f"mem={200 * 2**20}\n" in log
    assert "cpu=50000\n" in log
    assert "nets=lo,\n" in log


def test_branch_is_deployed_and_bad_repository_or_branch_fail_cleanly(
    live_site, repo, owner, docker_host, tmp_path
):
    site, port, _first = live_site
    repo.git("checkout", "-q", "-b", "release")
    release = repo.commit("release", {"index.html": "<h1>release branch</h1>\n"})
    repo.git("checkout", "-q", "main")

    with pytest.raises(ValidationError):
        deployments.request_deployment(site, actor=owner, trigger="api", branch="--upload-pack=x")
    d = deployments.request_deployment(site, actor=owner, trigger="api", branch="release")
    assert deployments.execute(d.pk, worker="test") == "succeeded"
    d.refresh_from_db()
    assert (d.branch, d.commit_hash) == ("release", release)
    port = current_port(site)
    assert b"release branch" in http_get(port)

    missing = deployments.request_deployment(site, actor=owner, trigger="api", branch="nope")
    assert deployments.execute(missing.pk, worker="test") == "failed"
    missing.refresh_from_db()
    assert "git clone failed" in missing.error
    assert [t["status"] for t in missing.transitions] == ["queued", "cloning", "failed"]

    Site.objects.filter(pk=site.pk).update(repository_url=f"file://{tmp_path}/nowhere")
    site.refresh_from_db()
    result, gone = deploy(site, owner)
    assert result == "failed"
    assert "git clone failed" in gone.error
    assert b"release branch" in http_get(port)
    assert len(engine_containers(docker_host)) == 1


def test_deployment_of_a_site_deleted_while_it_was_queued_starts_nothing(
    live_site, repo, owner, docker_host
):
    site, _port, _first = live_site
    repo.commit("v2", {"index.html": "<h1>version two</h1>\n"})
    d = deployments.request_deployment(site, actor=owner, trigger="api")
    converge_now(services.delete_site(site, actor=owner))
    assert engine_containers(docker_host) == []

    result = deployments.execute(d.pk, worker="test")

    d.refresh_from_db()
    assert d.status != S.SUCCEEDED, "a deleted site was brought back to life"
    assert result != "succeeded"
    assert engine_containers(docker_host) == []
    assert not Container.objects.filter(site=site).exists()


def test_old_logs_are_trimmed_to_their_tail(live_site, repo, owner):
    site, _port, first = live_site
    repo.commit("v2", {"index.html": "<h1>version two</h1>\n"})
    _, recent = deploy(site, owner)
    assert first.chunks.count() > 1
    Deployment.objects.filter(pk=first.pk).update(
        finished_at=first.finished_at - timedelta(days=91)
    )
    recent_chunks = recent.chunks.count()

    assert deployments.trim_old_logs() == 1
    assert deployments.trim_old_logs() == 0

    [tail] = deployments.read_log(first)["chunks"]
    assert f"deployment #{first.number} succeeded" in tail["text"]
    assert Deployment.objects.get(pk=first.pk).log_archived_at is not None
    assert recent.chunks.count() == recent_chunks


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_an_engine_lost_mid_build_fails_the_deployment_and_the_next_one_succeeds(
    live_site, repo, owner, docker_host, docker_endpoints, settings, fault
):
    """The engine dies (SIGTERM to dockerd) or freezes (SIGSTOP) while a build runs: the
    deployment ends failed with the reason (never stuck in `building`), v1 keeps serving once
    the engine is back, and the next deployment succeeds."""
    from tests import docker_engines
    from tests.integration.test_reconcile import dockerd_pid

    settings.DOCKER_TIMEOUT_SECONDS = 3
    site, port, _ = live_site
    repo.commit("slow", {"Dockerfile": served_dockerfile("RUN sleep 4"),
                         "www/index.html": "version two\n"})  # fmt: skip
    outcome: dict = {}

    def run():
        try:
            outcome["result"], outcome["deployment"] = deploy(site, owner)
        finally:
            connection.close()

    runner = threading.Thread(target=run)
    runner.start()
    wait_for(
        lambda: Deployment.objects.filter(site=site, status="building").exists(), 30, "building"
    )
    time.sleep(1)
    pid = dockerd_pid(docker_endpoints[0])
    try:
        if fault == "killed":
            docker_engines.stop_engine(docker_endpoints[0])
        else:
            os.kill(pid, signal.SIGSTOP)
        runner.join(timeout=120)
        assert not runner.is_alive(), "the deployment hung on the lost engine"
    finally:
        if fault == "frozen":
            os.kill(pid, signal.SIGCONT)
        else:
            docker_engines.restart_engines()
    result, second = outcome["result"], outcome["deployment"]
    assert result == "failed" and second.status == "failed", full_log(second)
    assert second.error
    engine.forget_client(docker_host)
    wait_for(lambda: _answers(port), 30, "v1 to answer again")
    assert b"version one" in http_get(port)

    repo.commit("fast", {"Dockerfile": served_dockerfile(), "www/index.html": "version three\n"})
    result, third = deploy(site, owner)
    assert result == "succeeded", full_log(third)
    assert b"version three" in wait_http(current_port(site))


def _answers(port: int) -> bool:
    try:
        http_get(port)
    except OSError:
        return False
    return True
