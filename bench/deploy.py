#!/usr/bin/env python
"""Deployment benchmark: the panel's whole deployment against plain docker build + run.

    .venv/bin/python bench/deploy.py [--repeat 5]

One process, its own engine (HP_DOCKER_BASE=/tmp/hp-dk-bench-deploy, started with
bin/docker-engines, network_mode "host" sites), its own SQLite file under /tmp. Two small
git repositories made on the spot: a static site (a few HTML files and a 200 kB asset; the
panel generates its Dockerfile) and a Dockerfile site (COPY, one RUN step, httpd on $PORT).
For each, interleaved, median of `--repeat` runs, each run on a commit of its own (a changed
page, so neither side reuses the other's COPY layer; the base layer is cached for both):

- **panel** — `request_deployment` + `deployments.execute`: clone, build (classic builder,
  bounded), start beside the old container with the site's limits and policy, health check,
  switch, every transition written and audited. The old container is retired at the switch
  and stopped by a task after the drain time (DEPLOY_DRAIN_SECONDS): that task is timed on
  its own, after the measurement ("retire, later"), as plain never stops anything;
- **plain** — in the same process, on the repository's own working tree: `docker build`
  (the same builder and Dockerfile) + `docker run -d --network host -e PORT=...` + polling
  GET / until the first HTTP 200. The plain container is removed after the measurement;
- **plain +limits** — the same with the flags hosting.builds adds to `docker build` (memory
  and CPU), to show what bounding the build costs; **+limits, no net** adds `--network none`
  (what DEPLOY_BUILD_NETWORK=none makes the panel do).

It prints medians, the ratio panel / plain (goal: at most 1.2), the same until the new
container is healthy (the switch left out) and where the panel's time goes (stages from the
deployment's transition timestamps, and the retire task timed on its own). It then removes
its containers and images, stops its engine (by the pid file of the engine it started) and
deletes its files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_BASE = "/tmp/hp-dk-bench-deploy"  # noqa: S108 (a private engine, by design)
WORK = Path("/tmp/hp-bench-deploy")  # noqa: S108
IMAGE = "hostpanel/busybox:test"

sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "hostpanel.settings"
os.environ["DATABASE_URL"] = f"sqlite:///{WORK / 'bench.sqlite3'}"
os.environ["DEPLOY_ALLOW_FILE_REPOSITORIES"] = "true"
os.environ["HOSTPANEL_STATIC_IMAGE"] = IMAGE

STATIC_DOCKERFILE = (
    f"FROM {IMAGE}\nCOPY . /www\n"
    'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]\n'  # what the panel generates
)
APP_DOCKERFILE = (
    f"FROM {IMAGE}\nCOPY www /www\nRUN echo built > /www/built.txt\n"
    'CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n'
)


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


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=b@b", "-c", "user.name=bench", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def make_repo(path: Path, kind: str) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    web = path if kind == "static" else path / "www"
    web.mkdir(exist_ok=True)
    for n in range(10):
        (web / f"page{n}.html").write_text(f"<h1>page {n}</h1>\n" * 50)
    (web / "asset.bin").write_bytes(os.urandom(200 * 1024))
    (web / "index.html").write_text("<h1>start</h1>\n")
    if kind == "dockerfile":
        (path / "Dockerfile").write_text(APP_DOCKERFILE)
    # As most repositories do: the history stays out of the build context of both sides.
    (path / ".dockerignore").write_text(".git\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def new_commit(repo: Path, kind: str) -> str:
    """A changed page, so each measured build has a COPY layer nobody built before."""
    nonce = uuid.uuid4().hex
    index = (repo if kind == "static" else repo / "www") / "index.html"
    index.write_text(f"<h1>{nonce}</h1>\n")
    git(repo, "commit", "-q", "-am", f"change {nonce}")
    return nonce


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_200(port: int, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"nothing answered on port {port}")
        time.sleep(0.01)


# What hosting.builds adds to `docker build`: limits, no network.
BUILD_LIMIT_FLAGS = [
    "--rm",
    "--force-rm",
    "--memory",
    "1024m",
    "--memory-swap",
    "1024m",
    "--cpu-period",
    "100000",
    "--cpu-quota",
    "100000",
]
# "+limits, no net": what DEPLOY_BUILD_NETWORK=none adds (each RUN step joins a network).
SERIES = {
    "plain": [],
    "+limits": BUILD_LIMIT_FLAGS,
    "+limits, no net": [*BUILD_LIMIT_FLAGS, "--network", "none"],
}


def plain(endpoint: str, repo: Path, kind: str, dockerfile: Path, flags=()) -> tuple[float, float]:
    """docker build + docker run + first 200, timed (total, build alone); the container is
    removed afterwards."""
    docker = ["docker", "-H", endpoint]
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    tag = f"bench/plain-{kind}:{uuid.uuid4().hex[:8]}"
    port = free_port()
    started = time.perf_counter()
    subprocess.run(
        [*docker, "build", "-q", *flags, "-f", str(dockerfile), "-t", tag, str(repo)],
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    built = time.perf_counter() - started
    run = subprocess.run(
        [*docker, "run", "-d", "--network", "host", "-e", f"PORT={port}", tag],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    first_200(port, time.monotonic() + 60)
    elapsed = time.perf_counter() - started
    subprocess.run([*docker, "rm", "-f", run.stdout.strip()], capture_output=True, timeout=120)
    return elapsed, built


def panel(site, actor) -> tuple[float, dict[str, float]]:
    from hosting import deployments, queue, services

    handed_off: list[list[str]] = []
    # The retire task's message is kept (and run below); nothing else is sent from here.
    queue.send = lambda task, *args, **kw: (
        handed_off.append(args[0]) if task == "retire_containers" else None
    )
    started, wall = time.perf_counter(), time.time()
    deployment = deployments.request_deployment(site, actor=actor, trigger="api")
    result = deployments.execute(deployment.pk, worker="bench")
    elapsed, ended = time.perf_counter() - started, time.time()
    retire_started = time.perf_counter()
    for batch in handed_off:  # what the retire task does once the drain is over
        deployments.retire_containers(batch)
    retire = time.perf_counter() - retire_started
    deployment.refresh_from_db()
    if result != "succeeded":
        log = "".join(c["text"] for c in deployments.read_log(deployment)["chunks"])
        raise SystemExit(f"deployment {result}: {deployment.error}\n{log[-3000:]}")
    port = services.current_container(site).port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        if response.status != 200:
            raise SystemExit(f"deployed site answered {response.status}")
    at = {t["status"]: datetime.fromisoformat(t["at"]).timestamp() for t in deployment.transitions}
    stages = {
        "request+claim": at["cloning"] - wall,
        "clone": at["building"] - at["cloning"],
        "build": at["starting"] - at["building"],
        "(its build)": deployment.build_time_seconds,
        "start+health": at["healthy"] - at["starting"],
        "switch": at["succeeded"] - at["healthy"],
        "return": ended - at["succeeded"],
        "retire, later": retire,
        "to healthy": at["healthy"] - wall,
    }
    return elapsed, stages


def main(args) -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    import django

    django.setup()
    import docker
    from django.core.management import call_command

    from accounts.models import Organization
    from hosting import services
    from hosting.reconcile import converge_now

    call_command("migrate", verbosity=0)
    endpoint = start_engine()
    client = docker.DockerClient(base_url=endpoint, timeout=120)
    results: dict[str, dict] = {}
    try:
        for stale in client.containers.list(all=True, sparse=True):
            stale.remove(force=True)
        org = Organization.objects.create(name="Bench", slug="bench")
        host = services.ping_host(
            services.create_host(actor=None, name="bench", endpoint=endpoint, network_mode="host"),
            actor=None,
        )
        generated = WORK / "Dockerfile.static"
        generated.write_text(STATIC_DOCKERFILE)
        for kind in ("static", "dockerfile"):
            repo = make_repo(WORK / f"repo-{kind}", kind)
            site = converge_now(
                services.create_site(
                    org,
                    actor=None,
                    host=host,
                    name=f"{kind} site",
                    slug=kind,
                    site_type="static" if kind == "static" else "docker",
                    image=IMAGE,
                    desired_state="stopped",
                    internal_port=free_port(),
                    repository_url=f"file://{repo}",
                    limits={"memory_mb": 128, "cpu_percent": 100},
                )
            )
            dockerfile = generated if kind == "static" else repo / "Dockerfile"
            # Warm-up: the site's first container, the CLI, the base layer in the cache.
            new_commit(repo, kind)
            panel(site, None)
            new_commit(repo, kind)
            plain(endpoint, repo, kind, dockerfile)
            times: dict[str, list[float]] = {"panel": [], **{name: [] for name in SERIES}}
            stages: list[dict[str, float]] = []
            plain_builds: list[float] = []
            for n in range(args.repeat):
                order = list(times) if n % 2 == 0 else list(reversed(times))
                for side in order:
                    new_commit(repo, kind)
                    if side == "panel":
                        elapsed, parts = panel(site, None)
                        stages.append(parts)
                    else:
                        elapsed, built = plain(endpoint, repo, kind, dockerfile, SERIES[side])
                        if side == "plain":
                            plain_builds.append(built)
                    times[side].append(elapsed)
            results[kind] = {
                **{side: statistics.median(values) for side, values in times.items()},
                "stages": {k: statistics.median(s[k] for s in stages) for k in stages[0]},
                "to_healthy": statistics.median(s["to healthy"] for s in stages),
                "plain_build": statistics.median(plain_builds),
            }
            for side, values in times.items():
                print(f"{kind}: {side} {sorted(round(t, 3) for t in values)} s")
    finally:
        for container in client.containers.list(all=True, sparse=True):
            container.remove(force=True)
        for image in client.images.list():
            if any(t.startswith(("bench/", "hostpanel/bench-")) for t in image.tags):
                client.images.remove(image.id, force=True)
        client.close()
        stop_engine(endpoint)
        shutil.rmtree(WORK, ignore_errors=True)
    report(results, args.repeat)


def report(results: dict[str, dict], repeat: int) -> None:
    print()
    print(f"Deployment, medians of {repeat} runs (ms); ratio = panel / plain build+run+200")
    print(
        f"{'site':<12}{'plain':>8}{'(its build)':>13}{'+limits':>9}{'+no net':>9}{'panel':>8}"
        f"{'ratio':>7}{'to healthy':>12}{'ratio':>7}"
    )
    for kind, r in results.items():
        print(
            f"{kind:<12}{r['plain'] * 1000:>8.0f}{r['plain_build'] * 1000:>13.0f}"
            f"{r['+limits'] * 1000:>9.0f}{r['+limits, no net'] * 1000:>9.0f}"
            f"{r['panel'] * 1000:>8.0f}{r['panel'] / r['plain']:>7.2f}"
            f"{r['to_healthy'] * 1000:>12.0f}{r['to_healthy'] / r['plain']:>7.2f}"
        )
    names = [n for n in next(iter(results.values()))["stages"] if n != "to healthy"]
    print()
    print("Panel stages, medians (ms):")
    print(f"{'site':<12}" + "".join(f"{name:>14}" for name in names))
    for kind, r in results.items():
        print(f"{kind:<12}" + "".join(f"{r['stages'][name] * 1000:>14.0f}" for name in names))
    for kind, r in results.items():
        ratio = r["panel"] / r["plain"]
        print(
            f"{kind}: panel deployment / plain build+run = {ratio:.2f} "
            f"(goal ≤ 1.2: {'met' if ratio <= 1.2 else 'NOT met'})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    main(parser.parse_args())
