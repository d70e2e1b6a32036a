"""SQLite under load: API writes through gunicorn (2 workers x 2 threads), a worker and beat
collecting usage every second and syncing every 2 s, and a rollup loop, all on one SQLite
file, for SQLITE_LOAD_SECONDS (default 60). Prints the request count and rate, 5xx, errors
and "database is locked" occurrences; fails if any of those is not zero. Needs Redis and
starts private Docker engines, like the integration tests (don't run it beside bin/test).

    .venv/bin/pytest -s -p no:cacheprovider bench/sqlite_load.py
"""

from __future__ import annotations

import os
import sys
import time

import pytest
from django.utils import timezone

from hosting import services
from hosting.reconcile import converge_now
from monitoring.models import UsageSample
from tests import docker_engines
from tests.factories import make_org, make_user
from tests.integration import processes
from tests.integration.test_workers import make_host

SECONDS = float(os.environ.get("SQLITE_LOAD_SECONDS", "60"))

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_sqlite_under_load_gives_no_database_is_locked(broker, procs, docker_endpoints, tmp_path):
    import threading
    import urllib.request

    from accounts import services as accounts_services
    from monitoring import rollups

    owner = make_user()
    org = make_org(owner, slug="load")
    make_host("engine-1", docker_endpoints[0])
    for n in range(3):
        converge_now(
            services.create_site(
                org,
                actor=None,
                name=f"s{n}",
                site_type="docker",
                image=docker_engines.TEST_IMAGE,
                start_command="sleep 600",
                limits={"memory_mb": 32},
            )
        )
    _, token = accounts_services.create_api_token(
        actor=owner, name="load", scopes=["read", "write"]
    )
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
            "2",
        ],
        processes.child_env(THROTTLE_TOKEN="100000/min"),
        tmp_path,
    )
    worker = procs.worker(USAGE_INTERVAL_SECONDS="1", SYNC_INTERVAL_SECONDS="2")
    procs.beat(USAGE_INTERVAL_SECONDS="1", SYNC_INTERVAL_SECONDS="2")
    web.wait_for_log("Booting worker", timeout=30)
    errors: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()

    def api_traffic():
        n = 0
        while not stop.is_set():
            n += 1
            for method, path, body in (
                ("POST", "sites/s0/env/", f'{{"key": "K{n}", "value": "v"}}'),
                ("PATCH", "sites/s1/", f'{{"name": "s1 {n}"}}'),
                ("GET", "sites/", None),
            ):
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v1/organizations/load/{path}",
                    data=body.encode() if body else None,
                    method=method,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        statuses.append(response.status)
                except urllib.error.HTTPError as exc:
                    statuses.append(exc.code)
                except OSError as exc:
                    errors.append(f"web: {exc}")

    def rollup_loop():
        while not stop.is_set():
            try:
                rollups.rollup_day(timezone.now().date())
            except Exception as exc:  # any failure of a concurrent writer is the finding
                errors.append(f"rollup: {exc}")
            time.sleep(0.2)

    threads = [threading.Thread(target=api_traffic), threading.Thread(target=rollup_loop)]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        time.sleep(SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        web.stop()

    elapsed = time.monotonic() - started
    logs = web.log() + worker.log()
    print(
        f"\n{len(statuses)} API requests in {elapsed:.0f}s ({len(statuses) / elapsed:.1f}/s), "
        f"{sum(s >= 500 for s in statuses)} 5xx, {len(errors)} errors, "
        f"{logs.count('database is locked')} 'database is locked' in the logs, "
        f"{UsageSample.objects.count()} usage samples written meanwhile"
    )
    assert not errors, errors[:5]
    assert statuses and all(s < 500 for s in statuses), sorted(set(statuses))
    assert "database is locked" not in logs
    assert UsageSample.objects.count() > 0
    assert len(statuses) > 100
