"""Usage collection without Docker: cgroup readings from fake trees, API answers from a fake
client. What is sampled, rates from consecutive samples, counter resets, one INSERT a tick,
a constant number of queries, concurrent API calls, failures skipped, disk sizes stored."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hosting import docker as engine
from hosting.models import Container, DockerHost, OrganizationQuota, Site
from monitoring import collectors
from monitoring.cgroups import Counters
from monitoring.models import UsageSample
from tests.hosting.factories import ensure_host, make_site

pytestmark = pytest.mark.django_db

MiB = 2**20


def cid(n: int) -> str:
    return f"{n:064x}"


# --- fakes ----------------------------------------------------------------------------------


class FakeTree:
    """A cgroup v2 root and a /proc with one process per container."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "cgroup"
        self.proc = tmp_path / "proc"
        self.root.mkdir()
        (self.root / "cgroup.controllers").write_text("cpu io memory pids\n")

    def set(self, docker_id: str, *, cpu_ns=0, memory=10 * MiB, rx=0, tx=0, pid=None) -> None:
        d = self.root / "docker" / docker_id
        d.mkdir(parents=True, exist_ok=True)
        pid = pid or str(1000 + int(docker_id, 16) % 50000)
        (d / "cpu.stat").write_text(f"usage_usec {cpu_ns // 1000}\n")
        (d / "memory.current").write_text(f"{memory + MiB}\n")
        (d / "memory.stat").write_text(f"anon {memory}\ninactive_file {MiB}\n")
        (d / "memory.max").write_text(f"{64 * MiB}\n")
        (d / "pids.current").write_text("2\n")
        (d / "io.stat").write_text("8:0 rbytes=100 wbytes=200 rios=1 wios=1\n")
        (d / "cgroup.procs").write_text(f"{pid}\n")
        net = self.proc / pid / "net"
        net.mkdir(parents=True, exist_ok=True)
        (net / "dev").write_text(
            "Inter-| Receive | Transmit\n face |bytes ...|bytes ...\n"
            "    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n"
            f"  eth0: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0\n"
        )


@pytest.fixture
def tree(tmp_path, settings) -> FakeTree:
    fake = FakeTree(tmp_path)
    settings.HOSTPANEL_CGROUP_ROOT = str(fake.root)
    settings.HOSTPANEL_PROC_ROOT = str(fake.proc)
    return fake


def api_answer(*, cpu_ns=5_000_000_000, usage=12 * MiB, rx=1000, tx=500, read=None) -> dict:
    """A one-shot stats answer as dockerd 20.10 gives it on cgroup v1."""
    return {
        "read": read or "2026-01-02T03:04:05.123456789Z",
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {"current": 3},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 1024},
                {"major": 8, "minor": 0, "op": "Total", "value": 5120},
                {"major": 8, "minor": 16, "op": "Read", "value": 4},
            ]
        },
        "cpu_stats": {"cpu_usage": {"total_usage": cpu_ns}, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 0}},
        "memory_stats": {
            "usage": usage,
            "limit": 64 * MiB,
            "stats": {"total_inactive_file": 2 * MiB, "inactive_file": MiB},
        },
        "networks": {
            "eth0": {"rx_bytes": rx, "tx_bytes": tx},
            "eth1": {"rx_bytes": 1, "tx_bytes": 2},
        },
    }


STOPPED_ANSWER = {
    "read": "0001-01-01T00:00:00Z",
    "pids_stats": {},
    "blkio_stats": {"io_service_bytes_recursive": None},
    "cpu_stats": {"cpu_usage": {"total_usage": 0}},
    "memory_stats": {},
}


class FakeApi:
    """Stands in for docker.APIClient.stats; records concurrency."""

    def __init__(self, answers: dict, delay: float = 0.0):
        self.answers = answers
        self.delay = delay
        self.calls: list[tuple] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def stats(self, container, stream=True, one_shot=None):
        with self.lock:
            self.calls.append((container, stream, one_shot))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            answer = self.answers[container]
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture
def fake_api(monkeypatch):
    def install(answers: dict, delay: float = 0.0) -> FakeApi:
        api = FakeApi(answers, delay)
        monkeypatch.setattr(collectors, "stats_api", lambda host: api)
        return api

    return install


@pytest.fixture
def host(cast) -> DockerHost:
    return ensure_host()


def running_container(host, site, n: int, **fields) -> Container:
    fields.setdefault("state", "running")
    return Container.objects.create(
        host=host, site=site, docker_id=cid(n), name=f"c{n}", image="x", **fields
    )


def make_sites(org, count: int):
    return [make_site(org) for _ in range(count)]


# --- parsing the API answer ---------------------------------------------------------------


def test_parse_api_stats_reads_like_docker_stats():
    read_at, counters = collectors.parse_api_stats(api_answer())

    assert read_at == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert counters == Counters(
        cpu_usage_ns=5_000_000_000,
        memory_bytes=10 * MiB,  # usage - total_inactive_file on v1
        memory_limit_bytes=64 * MiB,
        pids=3,
        net_rx_bytes=1001,
        net_tx_bytes=502,
        block_read_bytes=4100,
        block_write_bytes=1024,
    )


def test_parse_api_stats_cgroup_v2_answer():
    answer = api_answer()
    answer["memory_stats"]["stats"] = {"inactive_file": 3 * MiB}
    answer["blkio_stats"]["io_service_bytes_recursive"] = [
        {"major": 8, "minor": 0, "op": "read", "value": 7},
        {"major": 8, "minor": 0, "op": "write", "value": 9},
    ]
    _, counters = collectors.parse_api_stats(answer)
    assert counters.memory_bytes == 9 * MiB
    assert (counters.block_read_bytes, counters.block_write_bytes) == (7, 9)


def test_parse_api_stats_of_stopped_container_is_none():
    assert collectors.parse_api_stats(STOPPED_ANSWER) is None


def test_parse_api_stats_without_network_or_own_limit():
    answer = api_answer()
    answer["memory_stats"]["limit"] = 16 * 2**30  # the daemon's stand-in: host memory
    _, counters = collectors.parse_api_stats(answer, network=False, host_memory=16 * 2**30)
    assert (counters.net_rx_bytes, counters.net_tx_bytes) == (0, 0)
    assert counters.memory_limit_bytes == 0
    answer["memory_stats"]["limit"] = 9223372036854771712
    assert collectors.parse_api_stats(answer)[1].memory_limit_bytes == 0


def test_parse_api_stats_without_networks_key():
    answer = api_answer()
    del answer["networks"]  # host or none network mode
    _, counters = collectors.parse_api_stats(answer)
    assert (counters.net_rx_bytes, counters.net_tx_bytes) == (0, 0)


# --- what is sampled ------------------------------------------------------------------------


def test_only_running_containers_of_live_sites_are_sampled(cast, host, tree):
    live, other_live, deleted = make_sites(cast.org, 3)
    running_container(host, live, 1, disk_bytes=12345)
    running_container(host, other_live, 2, state="exited")
    running_container(host, None, 3)  # not the panel's
    running_container(host, deleted, 4)
    Site.objects.filter(pk=deleted.pk).update(deleted_at=timezone.now())  # soft-deleted
    for n in (1, 2, 3, 4):
        tree.set(cid(n), cpu_ns=10**9)

    assert collectors.collect_host(host) == 1

    sample = UsageSample.objects.get()
    assert (sample.site_id, sample.organization_id) == (live.pk, cast.org.pk)
    assert sample.docker_id == cid(1)
    assert sample.disk_bytes == 12345
    assert sample.memory_bytes == 10 * MiB
    assert sample.memory_limit_bytes == 64 * MiB
    assert sample.cpu_usage_ns == 10**9
    assert (sample.pids, sample.block_read_bytes, sample.block_write_bytes) == (2, 100, 200)
    # first sample: no rate yet
    assert sample.cpu_percent is None
    assert sample.bandwidth_bytes == 0


def test_host_network_containers_report_no_network(cast, host, tree):
    DockerHost.objects.filter(pk=host.pk).update(network_mode="host")
    host.refresh_from_db()
    running_container(host, make_site(cast.org), 1)
    tree.set(cid(1), rx=10**6, tx=10**6)

    collectors.collect_host(host)

    sample = UsageSample.objects.get()
    assert (sample.net_rx_bytes, sample.net_tx_bytes) == (0, 0)


# --- rates ----------------------------------------------------------------------------------


def age_samples(seconds: float) -> None:
    UsageSample.objects.update(timestamp=F("timestamp") - timedelta(seconds=seconds))


def test_second_tick_has_cpu_percent_and_bandwidth(cast, host, tree):
    site_a, site_b = make_sites(cast.org, 2)
    running_container(host, site_a, 1)
    running_container(host, site_b, 2)
    tree.set(cid(1), cpu_ns=7 * 10**9, rx=1000, tx=100)
    tree.set(cid(2), cpu_ns=10**9, rx=0, tx=0)
    assert collectors.collect_host(host) == 2
    age_samples(10)
    tree.set(cid(1), cpu_ns=12 * 10**9, rx=6000, tx=600)  # +5 s of CPU in 10 s, +5500 bytes
    tree.set(cid(2), cpu_ns=21 * 10**9, rx=10, tx=20)  # +20 s of CPU: two full CPUs

    assert collectors.collect_host(host) == 2

    latest = {s.docker_id: s for s in UsageSample.objects.order_by("timestamp")}
    assert latest[cid(1)].cpu_percent == pytest.approx(50, abs=0.5)
    assert latest[cid(1)].bandwidth_bytes == 5500
    assert latest[cid(2)].cpu_percent == pytest.approx(200, abs=2)
    assert latest[cid(2)].bandwidth_bytes == 30


def test_counter_reset_starts_rates_afresh(cast, host, tree):
    running_container(host, make_site(cast.org), 1)
    tree.set(cid(1), cpu_ns=50 * 10**9, rx=10**6, tx=10**6)
    collectors.collect_host(host)
    age_samples(10)
    tree.set(cid(1), cpu_ns=10**9, rx=100, tx=100)  # the container restarted

    collectors.collect_host(host)

    newest = UsageSample.objects.order_by("-timestamp").first()
    assert newest.cpu_percent is None
    assert newest.bandwidth_bytes == 0
    assert newest.cpu_usage_ns == 10**9


def test_rates_use_the_newest_previous_sample_of_the_same_container(cast, host, tree):
    site = make_site(cast.org)
    running_container(host, site, 1)
    tree.set(cid(1), cpu_ns=10**9)
    collectors.collect_host(host)
    age_samples(20)
    tree.set(cid(1), cpu_ns=3 * 10**9)
    collectors.collect_host(host)
    age_samples(10)
    # an older container of the same site, sampled more recently, must not be used
    UsageSample.objects.create(
        organization_id=site.organization_id,
        site=site,
        docker_id=cid(99),
        timestamp=timezone.now() - timedelta(seconds=1),
        memory_bytes=1,
        cpu_usage_ns=10**6,
    )
    tree.set(cid(1), cpu_ns=4 * 10**9)

    collectors.collect_host(host)

    newest = UsageSample.objects.filter(docker_id=cid(1)).order_by("-timestamp").first()
    assert newest.cpu_percent == pytest.approx(10, abs=0.2)  # 1 s of CPU over 10 s


def test_previous_sample_older_than_lookback_is_ignored(cast, host, tree):
    running_container(host, make_site(cast.org), 1)
    tree.set(cid(1), cpu_ns=10**9)
    collectors.collect_host(host)
    age_samples(collectors.PREVIOUS_SAMPLE_LOOKBACK.total_seconds() + 60)
    tree.set(cid(1), cpu_ns=2 * 10**9)

    collectors.collect_host(host)

    assert UsageSample.objects.order_by("-timestamp").first().cpu_percent is None


# --- queries --------------------------------------------------------------------------------


def tick_queries(host) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        collectors.collect_host(host)
    return [q["sql"] for q in ctx.captured_queries]


def inserts(sqls: list[str]) -> list[str]:
    table = UsageSample._meta.db_table
    return [s for s in sqls if s.lstrip().upper().startswith("INSERT") and table in s]


def test_one_insert_and_a_constant_number_of_queries_per_tick(cast, host, tree):
    sites = make_sites(cast.org, 10)
    for n, site in enumerate(sites[:2], start=1):
        running_container(host, site, n)
        tree.set(cid(n), cpu_ns=n * 10**9)
    tick_queries(host)  # the first tick has no previous samples to fetch
    small = tick_queries(host)
    for n, site in enumerate(sites[2:], start=3):
        running_container(host, site, n)
        tree.set(cid(n), cpu_ns=n * 10**9)
    tick_queries(host)
    large = tick_queries(host)

    assert len(inserts(small)) == len(inserts(large)) == 1
    assert len(large) == len(small)
    assert UsageSample.objects.count() == 2 + 2 + 10 + 10


def test_a_tick_of_many_containers_is_still_one_insert(cast, host, tree):
    """On SQLite Django 5.2 would split it into statements of 58 rows (its 999-variable
    assumption); hostpanel.db lets it use the library's real limit."""
    OrganizationQuota.objects.update_or_create(
        organization=cast.org,
        defaults={
            "max_sites": 100,
            "max_memory_mb": 100_000,
            "max_cpu_percent": 100_000,
            "max_disk_mb": 1_000_000,
        },
    )
    for n, site in enumerate(make_sites(cast.org, 70), start=1):
        running_container(host, site, n)
        tree.set(cid(n), cpu_ns=n * 10**9)

    sqls = tick_queries(host)

    assert len(inserts(sqls)) == 1
    assert UsageSample.objects.count() == 70
    assert connection.features.max_query_params == type(connection.features).max_query_params


def test_nothing_running_costs_one_query(cast, host, tree):
    assert len(tick_queries(host)) == 1
    assert UsageSample.objects.count() == 0


# --- the API path ---------------------------------------------------------------------------


def test_api_path_calls_are_concurrent_and_one_shot(cast, host, fake_api):
    sites = make_sites(cast.org, 8)
    for n, site in enumerate(sites, start=1):
        running_container(host, site, n)
    api = fake_api({cid(n): api_answer(cpu_ns=n * 10**9) for n in range(1, 9)}, delay=0.4)

    started = time.monotonic()
    assert collectors.collect_host(host, source="api") == 8
    elapsed = time.monotonic() - started

    assert elapsed < 0.4 * 8 / 2  # sequential calls would take 3.2 s
    assert api.max_active > 1
    assert {call[1:] for call in api.calls} == {(False, True)}
    sample = UsageSample.objects.get(docker_id=cid(3))
    assert sample.cpu_usage_ns == 3 * 10**9
    assert sample.memory_bytes == 10 * MiB
    assert sample.timestamp == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def test_api_path_rates_from_engine_read_times(cast, host, fake_api):
    running_container(host, make_site(cast.org), 1)
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    first = start.strftime("%Y-%m-%dT%H:%M:%S.000000001Z")
    second = (start + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000000001Z")
    fake_api({cid(1): api_answer(cpu_ns=10**9, read=first)})
    collectors.collect_host(host, source="api")
    fake_api({cid(1): api_answer(cpu_ns=4 * 10**9, read=second)})

    collectors.collect_host(host, source="api")

    newest = UsageSample.objects.order_by("-timestamp").first()
    assert newest.cpu_percent == pytest.approx(10.0)  # 3 s of CPU in 30 s


def test_api_failure_of_one_container_skips_only_it(cast, host, fake_api):
    sites = make_sites(cast.org, 3)
    for n, site in enumerate(sites, start=1):
        running_container(host, site, n)
    fake_api(
        {
            cid(1): api_answer(),
            cid(2): engine.SpecRejected(host, "No such container"),
            cid(3): STOPPED_ANSWER,  # stopped behind the panel's back
        }
    )

    assert collectors.collect_host(host, source="api") == 1
    assert list(UsageSample.objects.values_list("docker_id", flat=True)) == [cid(1)]


def test_unreachable_engine_raises_and_writes_nothing(cast, host, fake_api):
    sites = make_sites(cast.org, 2)
    for n, site in enumerate(sites, start=1):
        running_container(host, site, n)
    fake_api({cid(n): engine.HostUnavailable(host, "connection refused") for n in (1, 2)})

    with pytest.raises(engine.HostUnavailable):
        collectors.collect_host(host, source="api")
    assert UsageSample.objects.count() == 0


def test_auto_reads_cgroups_and_asks_the_api_for_the_rest(cast, host, tree, fake_api):
    site_a, site_b = make_sites(cast.org, 2)
    running_container(host, site_a, 1)
    running_container(host, site_b, 2)
    tree.set(cid(1), cpu_ns=111_000)
    api = fake_api({cid(2): api_answer(cpu_ns=222)})

    assert collectors.collect_host(host) == 2

    assert [c[0] for c in api.calls] == [cid(2)]
    got = dict(UsageSample.objects.values_list("docker_id", "cpu_usage_ns"))
    assert got == {cid(1): 111_000, cid(2): 222}


def test_cgroup_source_never_calls_the_api(cast, host, tree, fake_api):
    running_container(host, make_site(cast.org), 1)
    running_container(host, make_site(cast.org), 2)
    tree.set(cid(1))
    api = fake_api({})

    assert collectors.collect_host(host, source="cgroup") == 1
    assert api.calls == []


def test_remote_engine_uses_the_api_even_when_cgroups_exist(cast, host, tree, fake_api):
    DockerHost.objects.filter(pk=host.pk).update(endpoint="tcp://127.0.0.1:2376")
    host.refresh_from_db()
    running_container(host, make_site(cast.org), 1)
    tree.set(cid(1), cpu_ns=111_000)
    api = fake_api({cid(1): api_answer(cpu_ns=333)})

    collectors.collect_host(host)

    assert len(api.calls) == 1
    assert UsageSample.objects.get().cpu_usage_ns == 333


def test_unknown_source_is_refused(host):
    with pytest.raises(ValueError, match="source"):
        collectors.collect_host(host, source="magic")


# --- disk -----------------------------------------------------------------------------------


def test_measure_disk_stores_sizes_in_one_transaction(cast, host, monkeypatch):
    site_a, site_b = make_sites(cast.org, 2)
    a = running_container(host, site_a, 1)
    b = running_container(host, site_b, 2, state="exited")
    untouched = running_container(host, None, 3)
    monkeypatch.setattr(
        engine, "container_sizes", lambda h: {cid(1): 5 * MiB, cid(2): 0, cid(77): 1}
    )
    monkeypatch.setattr(engine, "volume_sizes", lambda h: {})

    with CaptureQueriesContext(connection) as ctx:
        assert collectors.measure_disk(host) == 2

    a.refresh_from_db()
    b.refresh_from_db()
    untouched.refresh_from_db()
    assert (a.disk_bytes, b.disk_bytes, untouched.disk_bytes) == (5 * MiB, 0, None)
    assert a.disk_measured_at is not None
    updates = [q for q in ctx.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1


def test_disk_bytes_reach_the_next_sample(cast, host, tree, monkeypatch):
    running_container(host, make_site(cast.org), 1)
    tree.set(cid(1))
    monkeypatch.setattr(engine, "container_sizes", lambda h: {cid(1): 42 * MiB})
    monkeypatch.setattr(engine, "volume_sizes", lambda h: {})
    collectors.measure_disk(host)

    collectors.collect_host(host)

    assert UsageSample.objects.get().disk_bytes == 42 * MiB


def test_measure_disk_stores_each_sites_volume_size(cast, host, monkeypatch):
    with_volume, without = make_sites(cast.org, 2)
    monkeypatch.setattr(engine, "container_sizes", lambda h: {})
    monkeypatch.setattr(
        engine, "volume_sizes", lambda h: {with_volume.volume_name: 7 * MiB, "hp-data-x": 1}
    )
    assert collectors.measure_disk(host) == 1
    with_volume.refresh_from_db()
    without.refresh_from_db()
    assert with_volume.volume_bytes == 7 * MiB and with_volume.volume_measured_at is not None
    assert without.volume_bytes is None
