"""Usage collection: one UsageSample per running site container of a host, every tick.

Two ways to read a container, chosen per container (DESIGN.md, "Workers", "Scale-out"):

- cgroup files (monitoring.cgroups), when the engine is local (a unix:// endpoint) and the
  container's cgroup directory exists here: ~0.1 ms a container, no daemon involved;
- concurrent one-shot API calls (`stats(stream=False, one_shot=True)`) on a thread pool for
  the rest (remote engines, or cgroups this machine cannot see). The daemon answers a
  one-shot call on its ~1 s tick, so calls are never made one after another.

Rates come from the previous sample of the same container: the previous samples are found
with the container query itself (a correlated subquery on the (site, timestamp) index, one
row per container) and fetched with one more query, so a tick costs a fixed number of queries
whatever the container count. A tick's samples are inserted with one bulk_create in one
transaction (one statement on SQLite too: see hostpanel.db).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from docker.errors import InvalidVersion

from hosting import docker as engine
from hosting.models import Container, DockerHost, ObservedState, Site
from hostpanel.db import real_sqlite_parameter_limit
from monitoring import cgroups
from monitoring.cgroups import Counters
from monitoring.models import UsageSample

log = logging.getLogger(__name__)

SOURCES = ("auto", "cgroup", "api")
# Threads (and pooled connections) for one-shot stats calls to one engine.
API_CONCURRENCY = 64
# How far back a container's previous sample is looked for. Bounded so the subquery reads at
# most a day of one site's samples; an older previous sample starts the rates afresh.
PREVIOUS_SAMPLE_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Target:
    """A running site container to sample, as the container query returns it."""

    docker_id: str
    site_id: Any
    organization_id: Any
    disk_bytes: int | None
    previous_id: int | None


@dataclass(frozen=True, slots=True)
class Reading:
    timestamp: datetime
    counters: Counters


# --- reading ------------------------------------------------------------------------------


def cgroup_reader() -> cgroups.CgroupReader:
    return cgroups.reader(
        getattr(settings, "HOSTPANEL_CGROUP_ROOT", cgroups.DEFAULT_CGROUP_ROOT),
        getattr(settings, "HOSTPANEL_PROC_ROOT", cgroups.DEFAULT_PROC_ROOT),
    )


def is_local(host: DockerHost) -> bool:
    """The engine runs on this machine, so its containers' cgroup files may be readable here."""
    return host.endpoint.startswith("unix://")


def read_cgroups(
    host: DockerHost, docker_ids: Iterable[str]
) -> tuple[dict[str, Reading], list[str]]:
    """Readings of the containers whose cgroup is here, and the ids that have none."""
    reader = cgroup_reader()
    network = host.network_mode != "host"
    found: dict[str, Reading] = {}
    missing: list[str] = []
    for docker_id in docker_ids:
        at = timezone.now()
        counters = reader.read(docker_id, network=network)
        if counters is None:
            missing.append(docker_id)
        else:
            found[docker_id] = Reading(at, counters)
    return found, missing


def stats_api(host: DockerHost) -> docker.APIClient:
    """The host's client with a connection pool that fits API_CONCURRENCY threads."""
    with engine.engine_call(host):
        return engine.client(host, pool_size=API_CONCURRENCY).api


_ZERO_TIME = "0001-01-01T00:00:00Z"
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _engine_time(value: str | None) -> datetime | None:
    """The daemon's `read` time (RFC 3339 with nanoseconds), or None when absent or zero."""
    if not value or value == _ZERO_TIME:
        return None
    match = _RFC3339.match(value)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{whole}.{micros}{zone}").astimezone(UTC)


def parse_api_stats(
    stats: dict[str, Any], *, network: bool = True, host_memory: int = 0
) -> tuple[datetime | None, Counters] | None:
    """Counters from one `stats(stream=False)` answer, read as `docker stats` reads them.

    None for a container that is not running (the daemon answers with a zero `read` time and
    empty sections). `host_memory`: the daemon reports the host's memory as the limit of an
    unlimited container; that becomes 0 (no limit), as the cgroup path reports it.
    """
    read_at = _engine_time(stats.get("read"))
    cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
    if read_at is None or "total_usage" not in cpu or not stats.get("pids_stats"):
        return None
    memory = stats.get("memory_stats") or {}
    usage = int(memory.get("usage") or 0)
    limit = cgroups.memory_limit(int(memory.get("limit") or 0))
    if host_memory and limit >= host_memory:
        limit = 0
    rx = tx = 0
    if network:
        for interface in (stats.get("networks") or {}).values():
            rx += int(interface.get("rx_bytes") or 0)
            tx += int(interface.get("tx_bytes") or 0)
    block_read = block_write = 0
    for entry in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or ():
        op = str(entry.get("op", "")).lower()  # "Read" on cgroup v1, "read" on v2
        if op == "read":
            block_read += int(entry.get("value") or 0)
        elif op == "write":
            block_write += int(entry.get("value") or 0)
    counters = Counters(
        cpu_usage_ns=int(cpu.get("total_usage") or 0),
        memory_bytes=cgroups.memory_used(usage, memory.get("stats") or {}),
        memory_limit_bytes=limit,
        pids=int((stats.get("pids_stats") or {}).get("current") or 0),
        net_rx_bytes=rx,
        net_tx_bytes=tx,
        block_read_bytes=block_read,
        block_write_bytes=block_write,
    )
    return read_at, counters


def _one_shot(api: docker.APIClient, docker_id: str) -> dict[str, Any]:
    try:
        return api.stats(docker_id, stream=False, one_shot=True)
    except InvalidVersion:  # engines older than API 1.41 have no one-shot mode
        return api.stats(docker_id, stream=False)


def read_api(host: DockerHost, docker_ids: list[str]) -> dict[str, Reading]:
    """Readings from concurrent one-shot stats calls. A container that fails is skipped.

    When every call failed because the engine could not be reached, that error is raised
    (the task retries it and the host goes offline); otherwise failures are logged.
    """
    if not docker_ids:
        return {}
    api = stats_api(host)
    network = host.network_mode != "host"

    def fetch(docker_id: str) -> tuple[str, Reading | None, Exception | None]:
        started = time.time()
        try:
            with engine.engine_call(host):
                stats = _one_shot(api, docker_id)
        except (engine.HostUnavailable, engine.HostError, engine.SpecRejected) as exc:
            return docker_id, None, exc
        parsed = parse_api_stats(stats, network=network, host_memory=host.memory_bytes)
        if parsed is None:
            return docker_id, None, None  # not running any more
        read_at, counters = parsed
        if read_at is None:
            read_at = datetime.fromtimestamp((started + time.time()) / 2, UTC)
        return docker_id, Reading(read_at, counters), None

    workers = min(API_CONCURRENCY, len(docker_ids))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stats") as pool:
        results = list(pool.map(fetch, docker_ids))
    readings = {docker_id: reading for docker_id, reading, _ in results if reading is not None}
    errors = [exc for _, _, exc in results if exc is not None]
    unreachable = [e for e in errors if isinstance(e, engine.HostUnavailable)]
    if unreachable and not readings:
        raise unreachable[0]
    for exc in errors:
        log.warning("usage: stats of a container on %s failed: %s", host.name, exc)
    return readings


# --- rates and the tick -------------------------------------------------------------------


def running_targets(host: DockerHost, now: datetime | None = None) -> list[Target]:
    """The host's running containers of live sites, each with the id of its previous sample.

    One query: the previous sample is a correlated subquery (newest sample of the same
    site and docker id within PREVIOUS_SAMPLE_LOOKBACK), walking the (site, timestamp) index.
    """
    now = now or timezone.now()
    previous = (
        UsageSample.objects.filter(
            site_id=OuterRef("site_id"),
            docker_id=OuterRef("docker_id"),
            timestamp__gte=now - PREVIOUS_SAMPLE_LOOKBACK,
        )
        .order_by("-timestamp")
        .values("pk")[:1]
    )
    rows = (
        Container.objects.filter(
            host=host,
            site__isnull=False,
            site__deleted_at__isnull=True,
            state=ObservedState.RUNNING,
        )
        .annotate(previous_id=Subquery(previous))
        .order_by()
        .values_list("docker_id", "site_id", "site__organization_id", "disk_bytes", "previous_id")
    )
    return [Target(*row) for row in rows]


def build_sample(target: Target, reading: Reading, previous: UsageSample | None) -> UsageSample:
    """A sample with its rates taken against the previous one (None/0 when there is none)."""
    c = reading.counters
    cpu_percent = None
    bandwidth = 0
    if previous is not None:
        wall_ns = (reading.timestamp - previous.timestamp) / timedelta(microseconds=1) * 1000
        if wall_ns > 0 and c.cpu_usage_ns >= previous.cpu_usage_ns:
            cpu_percent = round((c.cpu_usage_ns - previous.cpu_usage_ns) / wall_ns * 100, 3)
        if c.net_rx_bytes >= previous.net_rx_bytes and c.net_tx_bytes >= previous.net_tx_bytes:
            bandwidth = (c.net_rx_bytes - previous.net_rx_bytes) + (
                c.net_tx_bytes - previous.net_tx_bytes
            )
        # A counter below its previous value: the container restarted, rates start afresh.
    return UsageSample(
        organization_id=target.organization_id,
        site_id=target.site_id,
        docker_id=target.docker_id,
        timestamp=reading.timestamp,
        cpu_percent=cpu_percent,
        memory_bytes=c.memory_bytes,
        memory_limit_bytes=c.memory_limit_bytes,
        pids=c.pids,
        cpu_usage_ns=c.cpu_usage_ns,
        net_rx_bytes=c.net_rx_bytes,
        net_tx_bytes=c.net_tx_bytes,
        block_read_bytes=c.block_read_bytes,
        block_write_bytes=c.block_write_bytes,
        bandwidth_bytes=bandwidth,
        disk_bytes=target.disk_bytes,
    )


def collect_host(host: DockerHost, *, source: str = "auto") -> int:
    """Sample every running site container of the host; returns the number of samples.

    `source`: "auto" reads cgroup files where it can and asks the API for the rest;
    "cgroup" only reads cgroup files; "api" only asks the API (tests, benchmarks).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    targets = running_targets(host)
    if not targets:
        return 0
    ids = [t.docker_id for t in targets]
    readings: dict[str, Reading] = {}
    if source != "api" and is_local(host):
        readings, ids = read_cgroups(host, ids)
    if source != "cgroup" and ids:
        readings.update(read_api(host, ids))

    previous_ids = [t.previous_id for t in targets if t.previous_id is not None]
    previous = UsageSample.objects.only(
        "timestamp", "cpu_usage_ns", "net_rx_bytes", "net_tx_bytes"
    ).in_bulk(previous_ids)
    samples = [
        build_sample(t, readings[t.docker_id], previous.get(t.previous_id))
        for t in targets
        if t.docker_id in readings
    ]
    if samples:
        with transaction.atomic(), real_sqlite_parameter_limit():
            UsageSample.objects.bulk_create(samples)
    return len(samples)


# --- disk -----------------------------------------------------------------------------------


def measure_disk(host: DockerHost) -> int:
    """Store each panel container's writable-layer size and each site's /data volume size;
    returns the number of rows updated."""
    return measure_containers(host) + measure_volumes(host)


def measure_volumes(host: DockerHost) -> int:
    sizes = engine.volume_sizes(host)
    now = timezone.now()
    sites = [
        site
        for site in Site.objects.filter(host=host, volume_removed_at__isnull=True).only("pk")
        if site.volume_name in sizes
    ]
    for site in sites:
        site.volume_bytes = sizes[site.volume_name]
        site.volume_measured_at = now
    with transaction.atomic():
        Site.objects.bulk_update(sites, ["volume_bytes", "volume_measured_at"], batch_size=500)
    return len(sites)


def measure_containers(host: DockerHost) -> int:
    sizes = engine.container_sizes(host)
    if not sizes:
        return 0
    now = timezone.now()
    rows = [
        row
        for row in Container.objects.filter(host=host).only("pk", "docker_id")
        if row.docker_id in sizes
    ]
    for row in rows:
        row.disk_bytes = sizes[row.docker_id]
        row.disk_measured_at = now
    with transaction.atomic():
        Container.objects.bulk_update(rows, ["disk_bytes", "disk_measured_at"], batch_size=500)
    return len(rows)
