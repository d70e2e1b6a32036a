"""Faults on real parts, each with the same three questions: does any request get a 500
without a message, is any row lost or duplicated, does everything converge once the fault
ends? A frozen engine during sync and collection, the SQLite volume full, PostgreSQL
connections killed mid-request, Redis killed under a running worker and beat."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker
import pytest
from django.db import connection

from audit.models import AuditLog
from hosting import docker as engine
from hosting import reconcile, services, sync
from hosting.models import Container, EnvironmentVariable, ReconcileStatus, Site
from monitoring import collectors
from monitoring.models import UsageSample
from tests import docker_engines
from tests.factories import make_org, make_token, make_user
from tests.hosting.factories import site_url, the_site
from tests.integration import processes
from tests.integration.test_reconcile import frozen, make_host, running_site

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def request(port: int, token: str, method: str, path: str, body: dict | None = None):
    """(status, JSON body or None) of one API call; never raises for an HTTP status."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"raw": raw[:200].decode(errors="replace")}


def gunicorn(tmp_path: Path, name: str, **env: str) -> tuple[processes.Process, int]:
    port = docker_engines.free_port()
    web = processes.Process(
        name,
        [sys.executable, "-m", "gunicorn", "hostpanel.wsgi", "-b", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4", "--worker-class", "gthread"],
        processes.child_env(THROTTLE_TOKEN="100000/min", **env),
        tmp_path,
    )  # fmt: skip
    web.wait_for_log("Booting worker", timeout=30)
    processes.wait_until(lambda: _listening(port), timeout=30, what=f"{name} to listen")
    return web, port


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_answered(status: int, body, allowed_codes: tuple[str, ...]) -> None:
    """A success, or a 503 that says what happened (one of ALLOWED_CODES) and nothing else."""
    if status < 300:
        return
    assert status == 503, (status, body)
    assert body.get("code") in allowed_codes and body.get("detail"), body


# --- the engine frozen (SIGSTOP) during sync and usage collection ---------------------------


@pytest.mark.every_database
def test_a_frozen_engine_during_sync_and_collection(settings, docker_endpoints):
    settings.DOCKER_TIMEOUT_SECONDS = 2
    owner = make_user()
    org = make_org(owner)
    host = make_host("engine-1", docker_endpoints[0])
    site = running_site(org, host, "web")
    sync.sync_host(host)
    rows_before = set(Container.objects.filter(host=host).values_list("docker_id", "state"))
    assert rows_before
    samples_before = UsageSample.objects.count()

    with frozen(docker_endpoints[0]):
        engine.forget_client(host)
        started = time.monotonic()
        with pytest.raises((engine.HostUnavailable, engine.HostError)):
            sync.sync_host(host)
        with pytest.raises((engine.HostUnavailable, engine.HostError)):
            collectors.collect_host(host, source="api")
        took = time.monotonic() - started
    # Bounded by the timeout, and nothing was removed or half-written meanwhile.
    assert took < 4 * settings.DOCKER_TIMEOUT_SECONDS + 5, took
    assert set(Container.objects.filter(host=host).values_list("docker_id", "state")) == (
        rows_before
    )
    assert UsageSample.objects.count() == samples_before

    engine.forget_client(host)
    result = sync.sync_host(host)  # converges: the same containers, seen again
    assert result.seen >= 1
    assert set(Container.objects.filter(host=host).values_list("docker_id", "state")) == (
        rows_before
    )
    assert collectors.collect_host(host, source="api") == 1
    assert UsageSample.objects.filter(site=site).count() == samples_before + 1


# --- the SQLite volume full -----------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        reason = f"cannot mount a small tmpfs: {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


SETUP = """
from accounts import services as a
from hosting import services as h
user = a.create_user(email="o@example.test", password="pass phrase for tests 1")
org = a.create_organization(actor=user, name="Full", slug="full")
h.create_host(actor=None, name="idle", endpoint="unix:///nonexistent/docker.sock")
h.create_site(org, actor=user, name="Web", slug="web", site_type="docker",
              image="example/app:1", desired_state="stopped",
              limits={"memory_mb": 64, "cpu_percent": 10})
print(a.create_api_token(actor=user, name="t", scopes=["read", "write"])[1])
"""


def test_a_full_sqlite_volume_refuses_writes_with_a_message_and_loses_nothing(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite volume")
    volume = small_filesystem(tmp_path / "volume", "12m")
    with volume as mount:
        url = f"sqlite:///{mount / 'panel.sqlite3'}"
        env = processes.child_env(DATABASE_URL=url, HOSTPANEL_VAR_DIR=str(tmp_path / "var"))
        for args in (["migrate", "-v0"], ["shell", "-c", SETUP]):
            done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
        token = done.stdout.strip().splitlines()[-1]
        web, port = gunicorn(tmp_path, "web-full", DATABASE_URL=url,
                             HOSTPANEL_VAR_DIR=str(tmp_path / "var"))  # fmt: skip
        path = "/api/v1/organizations/full/sites/web/env/"
        try:
            filler = mount / "filler"
            with open(filler, "wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            created, refused = set(), 0
            for n in range(40):
                status, body = request(port, token, "POST", path,
                                       {"key": f"K{n}", "value": "v" * 4000})  # fmt: skip
                assert_answered(status, body, ("storage_full",))
                if status == 201:
                    created.add(f"K{n}")
                else:
                    refused += 1
            print(f"disk full: {len(created)} writes kept, {refused} refused with 503")
            assert refused > 0, "the volume never filled"
            # Reading may fail too (WAL readers write the -shm index): with a message.
            assert_answered(*request(port, token, "GET", path), ("storage_full",))

            filler.unlink()
            for n in range(40, 50):
                status, body = request(port, token, "POST", path, {"key": f"K{n}", "value": "v"})
                assert status == 201, body
                created.add(f"K{n}")
        finally:
            web.stop()
        check = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c",
             "from hosting.models import EnvironmentVariable as E; from audit.models import "
             "AuditLog as A; print(sorted(E.objects.values_list('key', flat=True))); "
             "print(A.objects.filter(action='env.set').count())"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr[-2000:]
        keys, audited = check.stdout.strip().splitlines()[-2:]
        assert keys == str(sorted(created))  # each 201 kept once, each refusal left nothing
        assert int(audited) == len(created)


# --- PostgreSQL connections killed mid-request ----------------------------------------------


@pytest.mark.every_database
def test_postgres_connections_killed_mid_request(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's backends")
    owner = make_user()
    org = make_org(owner, "Killed", slug="killed")
    the_site(org)
    token = make_token(owner)
    web, port = gunicorn(tmp_path, "web-pg", CONN_MAX_AGE="60")
    path = site_url(org, part="env")
    results: list[tuple[int, dict, str]] = []
    stop = threading.Event()

    def load():
        n = 0
        while not stop.is_set() and n < 400:
            status, body = request(port, token, "POST", path, {"key": f"K{n}", "value": "v"})
            results.append((status, body, f"K{n}"))
            request(port, token, "GET", path)
            n += 1

    worker = threading.Thread(target=load, daemon=True)
    try:
        worker.start()
        kills = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                kills += cursor.fetchone()[0]
            time.sleep(0.15)
        stop.set()
        worker.join(timeout=120)
        after = [request(port, token, "GET", path)[0] for _ in range(10)]
    finally:
        stop.set()
        web.stop()
    refused = sum(1 for status, _, _ in results if status == 503)
    print(f"pg_terminate_backend: {kills} backends killed, {len(results)} writes, {refused} 503")
    assert kills > 5 and len(results) > 10, (kills, len(results))
    for status, body, _ in results:
        assert_answered(status, body, ("database_unavailable",))
    assert after == [200] * 10  # converged: fresh connections
    created = sorted(key for status, _, key in results if status == 201)
    assert sorted(EnvironmentVariable.objects.values_list("key", flat=True)) == created
    assert AuditLog.objects.filter(action="env.set").count() == len(created)


# --- Redis killed and restarted under a worker and beat -------------------------------------


def _redis(port: int, data: Path) -> subprocess.Popen:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "yes", "--appendfsync", "always", "--dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    processes.wait_until(lambda: _listening(port), timeout=20, what="redis to listen")
    return proc


def test_redis_killed_under_a_worker_and_beat_resumes_the_schedule(tmp_path):
    port = docker_engines.free_port()
    data = tmp_path / "redis"
    data.mkdir()
    url = f"redis://127.0.0.1:{port}/0"
    redis = _redis(port, data)
    env = {"CELERY_BROKER_URL": url, "RECONCILE_INTERVAL_SECONDS": "1"}
    worker = processes.start_worker(tmp_path, **env)
    beat = processes.start_beat(tmp_path, **env)
    try:
        processes.wait_until(lambda: worker.log().count("succeeded") >= 2, timeout=60,
                             what="the schedule to run")  # fmt: skip
        redis.send_signal(signal.SIGKILL)
        redis.wait(timeout=10)
        time.sleep(3)
        assert worker.popen.poll() is None and beat.popen.poll() is None  # they wait, alive
        before = worker.log().count("succeeded")
        redis = _redis(port, data)
        processes.wait_until(lambda: worker.log().count("succeeded") >= before + 2, timeout=90,
                             what="the schedule to resume after Redis came back")  # fmt: skip
        assert worker.popen.poll() is None and beat.popen.poll() is None
    finally:
        beat.stop()
        worker.stop()
        redis.send_signal(signal.SIGTERM)
        redis.wait(timeout=10)


# --- the engine stopped under a reconcile ---------------------------------------------------


@pytest.mark.every_database
def test_an_engine_stopped_under_a_reconcile_leaves_it_pending_then_converges(
    settings, docker_endpoints
):
    """The engine goes away (dockerd stopped, its containers with it) just as a restart is
    reconciled: the site waits `pending` with the reason, no row is lost; once the engine is
    back the next pass converges to exactly one running container."""
    settings.DOCKER_TIMEOUT_SECONDS = 3
    org = make_org(make_user())
    host = make_host("engine-1", docker_endpoints[0])
    site = running_site(org, host, "web")
    docker_engines.stop_engine(docker_endpoints[0])
    try:
        engine.forget_client(host)
        site = reconcile.converge_now(services.restart_site(site, actor=None))
        assert site.reconcile_status == ReconcileStatus.PENDING, site.reconcile_status
        assert site.reconcile_error
        assert Container.objects.filter(site=site).count() == 1  # the row stays
    finally:
        docker_engines.restart_engines()
    engine.forget_client(host)
    services.ping_host(host, actor=None)
    site = reconcile.converge_now(Site.objects.get(pk=site.pk))
    assert site.reconcile_status == ReconcileStatus.CONVERGED, site.reconcile_error
    client = docker.DockerClient(base_url=docker_endpoints[0])
    try:
        labelled = client.containers.list(
            all=True, filters={"label": f"{engine.LABEL_SITE}={site.pk}"}
        )
    finally:
        client.close()
    assert [c.status for c in labelled] == ["running"]
    assert Container.objects.filter(site=site).count() == 1
