#!/usr/bin/env python
"""Container sync benchmark: hosting.sync.sync_host against a bare docker-py listing.

    .venv/bin/python bench/sync.py [--containers 500] [--small 50] [--repeat 5] [--no-postgres]

One run, one private engine (HP_DOCKER_BASE=/tmp/hp-dk-bench-sync), the same containers for
every database: busybox containers made with `docker create` (created, not started, so the
machine stays calm; a container's state does not change what the sync does). First `--small`
containers, then the rest up to `--containers`; at each size a child process per database (a
fresh SQLite file under /tmp, and PostgreSQL on 127.0.0.1:5432 when it answers) migrates,
adds the organization, host and sites the labels name, runs one first sync (every row
inserted), then times `--repeat` steady syncs against as many `client.containers.list(all=True)`
calls (docker-py's own listing, which inspects each container) in the same process, and
counts the queries of both kinds of sync. Medians; the goal is sync ≤ 1.5x the listing and a
query count that does not grow from the small size to the large one. Everything it made is
removed at the end (containers, engine, databases).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_BASE = "/tmp/hp-dk-bench-sync"  # noqa: S108 (a private engine, by design)
WORK = Path("/tmp/hp-bench-sync")  # noqa: S108
MANIFEST = WORK / "manifest.json"
SQLITE_URL = f"sqlite:///{WORK / 'bench.sqlite3'}"
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
PG_NAME = "hp_bench_sync"
IMAGE = "hostpanel/busybox:test"
SITES = 50  # sites the labelled containers belong to (one container each)


# --- parent: engine, containers, children, clean-up ----------------------------------------


def engines(command: str) -> str:
    env = {**os.environ, "HP_DOCKER_BASE": ENGINE_BASE}
    args = [str(ROOT / "bin" / "docker-engines"), command] + (["1"] if command == "start" else [])
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=300)
    return done.stdout.strip()


def postgres_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=3):
            return True
    except Exception:
        return False


def pg_database(create: bool) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
        if create:
            conn.execute(f"CREATE DATABASE {PG_NAME}")


def fresh_database(url: str) -> None:
    if url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(str(WORK / "bench.sqlite3") + suffix).unlink(missing_ok=True)
    else:
        pg_database(create=True)


def add_containers(client, manifest: dict, first: int, last: int) -> None:
    """Containers first..last-1; every other one labelled as a site's, while sites last."""

    def make(n: int) -> None:
        labels = {}
        if n % 2 == 0 and n // 2 < len(manifest["sites"]):
            labels = {
                "io.hostpanel.managed": "true",
                "io.hostpanel.site": manifest["sites"][n // 2],
                "io.hostpanel.organization": manifest["organization"],
            }
        client.api.create_container(
            IMAGE,
            ["sleep", "3600"],
            name=f"bench-{n:04d}",
            labels=labels,
            host_config=client.api.create_host_config(network_mode="none"),
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(make, range(first, last)))


def run_child(url: str, endpoint: str, repeat: int) -> dict:
    fresh_database(url)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "hostpanel.settings"}
    args = [sys.executable, __file__, "--child", endpoint, "--repeat", str(repeat)]
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"child failed on {url}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args) -> None:
    import docker

    WORK.mkdir(parents=True, exist_ok=True)
    manifest = {
        "organization": str(uuid.uuid4()),
        "sites": [str(uuid.uuid4()) for _ in range(SITES)],
    }
    MANIFEST.write_text(json.dumps(manifest))
    databases = {"SQLite": SQLITE_URL}
    if args.postgres and postgres_answers():
        databases["PostgreSQL"] = f"{PG_SERVER}/{PG_NAME}"
    endpoint = engines("start")
    client = docker.DockerClient(base_url=endpoint, timeout=120)
    results: dict[tuple[str, int], dict] = {}
    try:
        for stale in client.containers.list(all=True, sparse=True):
            stale.remove(force=True)
        made = 0
        for size in (args.small, args.containers):
            started = time.perf_counter()
            add_containers(client, manifest, made, size)
            made = size
            print(f"{size} containers on the engine ({time.perf_counter() - started:.1f} s)")
            for name, url in databases.items():
                results[name, size] = run_child(url, endpoint, args.repeat)
                print(f"  {name}: done")
    finally:
        for container in client.containers.list(all=True, sparse=True):
            container.remove(force=True)
        client.close()
        engines("stop")
        if "PostgreSQL" in databases:
            pg_database(create=False)
        shutil.rmtree(WORK, ignore_errors=True)
    report(results, databases, (args.small, args.containers), args.repeat)


def report(results, databases, sizes, repeat) -> None:
    print()
    print(f"Container sync, medians of {repeat} (ms); ratio = sync / containers.list(all=True)")
    header = (
        f"{'database':<11}{'containers':>11}{'list(all)':>11}{'raw list':>10}{'sync':>9}"
        f"{'ratio':>8}{'first sync':>12}{'queries':>9}{'first':>7}"
    )
    print(header)
    for name in databases:
        for size in sizes:
            r = results[name, size]
            print(
                f"{name:<11}{size:>11}{r['list_ms']:>11.1f}{r['raw_ms']:>10.1f}{r['sync_ms']:>9.1f}"
                f"{r['sync_ms'] / r['list_ms']:>7.2f}x{r['first_sync_ms']:>12.1f}"
                f"{r['queries']:>9}{r['first_queries']:>7}"
            )
    for name in databases:
        small, large = (results[name, size] for size in sizes)
        constant = small["queries"] == large["queries"]
        first_constant = small["first_queries"] == large["first_queries"]
        ratio = large["sync_ms"] / large["list_ms"]
        print(
            f"{name}: {sizes[1]} containers sync/list {ratio:.2f}x (goal ≤ 1.5x: "
            f"{'met' if ratio <= 1.5 else 'NOT met'}); queries per sync "
            f"{small['queries']} → {large['queries']} ({'constant' if constant else 'GROWS'}), "
            f"first sync {small['first_queries']} → {large['first_queries']} "
            f"({'constant' if first_constant else 'GROWS'})"
        )


# --- child: one database, one size --------------------------------------------------------


def child(endpoint: str, repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import docker
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import Organization
    from hosting import services, sync
    from hosting.models import Container, DesiredState, Site

    call_command("migrate", verbosity=0)
    manifest = json.loads(MANIFEST.read_text())
    org = Organization.objects.create(id=manifest["organization"], name="Bench", slug="bench")
    host = services.create_host(actor=None, name="bench", endpoint=endpoint, network_mode="none")
    Site.objects.bulk_create(
        Site(
            id=site_id,
            organization=org,
            name=f"Site {n}",
            slug=f"site-{n}",
            image=IMAGE,
            host=host,
            desired_state=DesiredState.STOPPED,
        )
        for n, site_id in enumerate(manifest["sites"])
    )
    bare = docker.DockerClient(base_url=endpoint, timeout=120)

    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000

    with CaptureQueriesContext(connection) as first:
        first_ms = timed(lambda: sync.sync_host(host))
    count = Container.objects.filter(host=host).count()
    sync_ms, list_ms, raw_ms = [], [], []
    for _ in range(repeat):  # interleaved, so drift in machine load hits both alike
        list_ms.append(timed(lambda: bare.containers.list(all=True)))
        raw_ms.append(timed(lambda: bare.api.containers(all=True)))
        sync_ms.append(timed(lambda: sync.sync_host(host)))
    with CaptureQueriesContext(connection) as steady:
        sync.sync_host(host)
    bare.close()
    print(
        json.dumps(
            {
                "rows": count,
                "first_sync_ms": first_ms,
                "first_queries": len(first),
                "sync_ms": statistics.median(sync_ms),
                "list_ms": statistics.median(list_ms),
                "raw_ms": statistics.median(raw_ms),
                "queries": len(steady),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, default=500)
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", dest="postgres", action="store_false")
    parser.add_argument("--child", metavar="ENDPOINT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child, options.repeat)
    else:
        main(options)
