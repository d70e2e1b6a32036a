#!/usr/bin/env python
"""Usage collection benchmark: monitoring.collectors.collect_host against `docker stats`.

    .venv/bin/python bench/collect.py [--containers 50 200] [--repeat 5]

One process, one private engine (HP_DOCKER_BASE=/tmp/hp-dk-bench, started with
bin/docker-engines), one SQLite file under /tmp. For each size it runs that many busybox
containers (`sleep` in a loop, network none, 64 MB limit) labelled as site containers, with
the organization, host, site and Container rows the collector reads, then times, interleaved
and `--repeat` times each, on the same containers:

- collect_host(host, source="cgroup"): cgroup files, rates, one bulk insert (the local path);
- collect_host(host, source="api"): concurrent one-shot stats calls (the remote-engine path);
- `docker stats --no-stream <ids>` as a subprocess (the reference);
- the cgroup reads alone, without the database (what the file reading itself costs).

It prints medians and the ratio ours / docker stats (goal: cgroup path ≤ 0.25 locally), then
removes its containers, stops its engine (by the pid file of the engine it started, so other
engines under a /tmp/hp-dk-bench-* prefix are left alone) and deletes its database.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_BASE = "/tmp/hp-dk-bench"  # noqa: S108 (a private engine, by design)
WORK = Path("/tmp/hp-bench-collect")  # noqa: S108
IMAGE = "hostpanel/busybox:test"
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 60; done"]

sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "hostpanel.settings"
os.environ["DATABASE_URL"] = f"sqlite:///{WORK / 'bench.sqlite3'}"


def start_engine() -> str:
    env = {**os.environ, "HP_DOCKER_BASE": ENGINE_BASE}
    done = subprocess.run(
        [str(ROOT / "bin" / "docker-engines"), "start", "1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout.split()[0]


def stop_engine(endpoint: str) -> None:
    """Stop the engine of this socket only (bin/docker-engines stop would match by prefix)."""
    pidfile = Path(endpoint.removeprefix("unix://")).parent / "docker.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(args) -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    import django

    django.setup()
    import docker
    from django.core.management import call_command

    from accounts.models import Organization
    from hosting import docker as engine
    from hosting import services
    from hosting.models import Container, DesiredState, ObservedState, Site
    from monitoring import cgroups, collectors
    from monitoring.models import UsageSample

    call_command("migrate", verbosity=0)
    endpoint = start_engine()
    client = docker.DockerClient(base_url=endpoint, timeout=120)
    results: dict[int, dict[str, float]] = {}
    try:
        for stale in client.containers.list(all=True, sparse=True):
            stale.remove(force=True)
        org = Organization.objects.create(name="Bench", slug="bench")
        host = services.ping_host(
            services.create_host(actor=None, name="bench", endpoint=endpoint, network_mode="none"),
            actor=None,
        )

        def add(n: int) -> tuple[Site, Container]:
            site = Site(
                id=uuid.uuid4(),
                organization=org,
                name=f"Site {n}",
                slug=f"site-{n}",
                image=IMAGE,
                host=host,
                desired_state=DesiredState.RUNNING,
                observed_state=ObservedState.RUNNING,
            )
            container = client.containers.run(
                IMAGE,
                IDLE,
                detach=True,
                name=f"bench-{n:04d}",
                labels=engine.site_labels(site),
                network_mode="none",
                mem_limit=64 * 2**20,
            )
            row = Container(
                host=host,
                site=site,
                docker_id=container.id,
                name=container.name,
                image=IMAGE,
                state=ObservedState.RUNNING,
                labels=engine.site_labels(site),
            )
            return site, row

        made = 0
        for size in sorted(args.containers):
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                pairs = list(pool.map(add, range(made, size)))
            Site.objects.bulk_create([site for site, _ in pairs])
            Container.objects.bulk_create([row for _, row in pairs])
            made = size
            print(f"{size} containers running ({time.perf_counter() - started:.1f} s to add)")
            results[size] = measure(host, endpoint, args.repeat, collectors, cgroups)
            samples = UsageSample.objects.filter(cpu_percent__isnull=False).count()
            print(f"  done; {samples} samples with a CPU% so far")
    finally:
        for container in client.containers.list(all=True, sparse=True):
            container.remove(force=True)
        client.close()
        stop_engine(endpoint)
        shutil.rmtree(WORK, ignore_errors=True)
    report(results, args.repeat)


def measure(host, endpoint: str, repeat: int, collectors, cgroups) -> dict[str, float]:
    from hosting.models import Container

    ids = list(Container.objects.filter(host=host).values_list("docker_id", flat=True))
    count = len(ids)
    reader = cgroups.reader()

    def ours(source: str):
        def run():
            got = collectors.collect_host(host, source=source)
            if got != count:
                raise SystemExit(f"collect_host({source}) sampled {got} of {count}")

        return run

    def docker_stats():
        shown = subprocess.run(
            ["docker", "-H", endpoint, "stats", "--no-stream", *ids],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        if len(shown.strip().splitlines()) != count + 1:
            raise SystemExit("docker stats did not show every container")

    def reads_only():
        for docker_id in ids:
            if reader.read(docker_id) is None:
                raise SystemExit(f"no cgroup for {docker_id}")

    methods = {
        "cgroup": ours("cgroup"),
        "api": ours("api"),
        "docker_stats": docker_stats,
        "reads_only": reads_only,
    }
    for call in methods.values():  # warm-up: clients, pools, first samples
        call()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeat):  # interleaved, so drift in machine load hits all alike
        for name, call in methods.items():
            times[name].append(timed(call))
    return {name: statistics.median(values) for name, values in times.items()}


def report(results: dict[int, dict[str, float]], repeat: int) -> None:
    print()
    print(f"Usage collection, medians of {repeat} runs (ms); ratio = ours / docker stats")
    print(
        f"{'containers':>10}{'docker stats':>14}{'ours: cgroup':>14}{'ratio':>8}"
        f"{'ours: API':>12}{'ratio':>8}{'cgroup reads':>14}{'per container':>15}"
    )
    for size, r in sorted(results.items()):
        reference = r["docker_stats"]
        print(
            f"{size:>10}{reference * 1000:>14.1f}{r['cgroup'] * 1000:>14.1f}"
            f"{r['cgroup'] / reference:>8.3f}{r['api'] * 1000:>12.1f}{r['api'] / reference:>8.2f}"
            f"{r['reads_only'] * 1000:>14.1f}{r['reads_only'] / size * 1e6:>12.0f} µs"
        )
    for size, r in sorted(results.items()):
        ratio = r["cgroup"] / r["docker_stats"]
        print(
            f"{size} containers: collect_host (cgroup files) / docker stats = {ratio:.3f} "
            f"(goal ≤ 0.25: {'met' if ratio <= 0.25 else 'NOT met'})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--repeat", type=int, default=5)
    main(parser.parse_args())
