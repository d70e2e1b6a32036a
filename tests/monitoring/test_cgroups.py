"""Reading a container's counters from cgroup files: v1 and v2, cgroupfs and systemd drivers,
on fake trees; and v1 on a real container of the private engine, against `docker stats`."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import docker
import pytest

from monitoring import cgroups
from monitoring.cgroups import CgroupReader, Counters
from tests import docker_engines

CID = "ab" * 32
PID = "4242"
# /proc/<pid>/net/dev as the kernel writes it (columns shortened: 8 receive, 8 transmit)
NET_DEV = (
    "Inter-|   Receive                            |  Transmit\n"
    " face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop ...\n"
    "    lo:  999999  10 0 0 0 0 0 0   999999  10 0 0 0 0 0 0\n"
    "  eth0:    1500  12 0 0 0 0 0 0      700   7 0 0 0 0 0 0\n"
    "  eth1:     500   2 0 0 0 0 0 0      300   3 0 0 0 0 0 0\n"
)
V1_MEMORY_STAT = """cache 2000000
rss 1000000
inactive_file 300000
active_file 100000
hierarchical_memory_limit 67108864
total_cache 2000000
total_rss 1000000
total_inactive_file 1500000
total_active_file 100000
"""
BLKIO_V1 = """8:0 Read 4096
8:0 Write 8192
8:0 Sync 0
8:0 Async 12288
8:0 Discard 0
8:0 Total 12288
8:16 Read 1000
8:16 Write 24
8:16 Total 1024
Total 13312
"""


def write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def proc_tree(tmp_path: Path, net_dev: str = NET_DEV) -> Path:
    proc = tmp_path / "proc"
    write(proc / PID / "net" / "dev", net_dev)
    return proc


def v1_tree(
    tmp_path: Path,
    *,
    relative: str = f"docker/{CID}",
    cpuacct: str = "cpuacct",
    limit: str = "67108864",
) -> Path:
    root = tmp_path / "cgroup"
    memory = root / "memory" / relative
    write(memory / "memory.usage_in_bytes", "3500000\n")
    write(memory / "memory.stat", V1_MEMORY_STAT)
    write(memory / "memory.limit_in_bytes", f"{limit}\n")
    write(memory / "cgroup.procs", f"{PID}\n4243\n")
    write(root / cpuacct / relative / "cpuacct.usage", "123456789\n")
    write(root / "pids" / relative / "pids.current", "7\n")
    write(root / "blkio" / relative / "blkio.throttle.io_service_bytes", BLKIO_V1)
    # the hybrid layout's cgroup2 mount also has a cpu.stat: it must not be taken for v2
    write(root / "unified" / relative / "cpu.stat", "usage_usec 1\n")
    return root


def v2_tree(tmp_path: Path, *, relative: str = f"docker/{CID}", memory_max: str = "max") -> Path:
    root = tmp_path / "cgroup2"
    write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    d = root / relative
    write(d / "memory.current", "5000000\n")
    write(d / "memory.stat", "anon 1000000\nfile 4000000\ninactive_file 3000000\n")
    write(d / "memory.max", f"{memory_max}\n")
    write(d / "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    write(d / "pids.current", "3\n")
    write(
        d / "io.stat",
        "8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n"
        "253:0 rbytes=30 wbytes=40 rios=3 wios=4 dbytes=0 dios=0\n",
    )
    write(d / "cgroup.procs", f"{PID}\n")
    return root


EXPECTED_V1 = Counters(
    cpu_usage_ns=123456789,
    memory_bytes=3500000 - 1500000,  # total_inactive_file, not inactive_file
    memory_limit_bytes=67108864,
    pids=7,
    net_rx_bytes=2000,  # eth0 + eth1, not lo
    net_tx_bytes=1000,
    block_read_bytes=5096,
    block_write_bytes=8216,
)


@pytest.mark.parametrize(
    ("relative", "cpuacct"),
    [
        (f"docker/{CID}", "cpuacct"),  # cgroupfs driver, this machine's layout
        (f"system.slice/docker-{CID}.scope", "cpuacct"),  # systemd driver
        (f"docker/{CID}", "cpu,cpuacct"),  # cpu and cpuacct co-mounted
    ],
)
def test_v1_tree_reads_every_counter(tmp_path, relative, cpuacct):
    root = v1_tree(tmp_path, relative=relative, cpuacct=cpuacct)
    reader = CgroupReader(str(root), str(proc_tree(tmp_path)))

    assert reader.unified is False
    assert reader.relative_dir(CID) == relative
    assert reader.read(CID) == EXPECTED_V1


def test_v1_unlimited_memory_is_zero(tmp_path):
    root = v1_tree(tmp_path, limit="9223372036854771712")
    counters = CgroupReader(str(root), str(proc_tree(tmp_path))).read(CID)
    assert counters.memory_limit_bytes == 0


def test_v2_tree_reads_every_counter(tmp_path):
    root = v2_tree(tmp_path, memory_max="134217728")
    reader = CgroupReader(str(root), str(proc_tree(tmp_path)))

    assert reader.unified is True
    assert reader.read(CID) == Counters(
        cpu_usage_ns=2_500_000_000,  # usage_usec * 1000
        memory_bytes=2000000,  # memory.current - inactive_file
        memory_limit_bytes=134217728,
        pids=3,
        net_rx_bytes=2000,
        net_tx_bytes=1000,
        block_read_bytes=1030,
        block_write_bytes=2040,
    )


def test_v2_systemd_driver_and_max_memory(tmp_path):
    root = v2_tree(tmp_path, relative=f"system.slice/docker-{CID}.scope", memory_max="max")
    counters = cgroups.read_container(
        CID, cgroup_root=str(root), proc_root=str(proc_tree(tmp_path))
    )
    assert counters is not None
    assert counters.memory_limit_bytes == 0
    assert counters.cpu_usage_ns == 2_500_000_000


def test_v2_without_io_controller_reads_zero_block_bytes(tmp_path):
    root = v2_tree(tmp_path)
    (root / "docker" / CID / "io.stat").unlink()
    counters = CgroupReader(str(root), str(proc_tree(tmp_path))).read(CID)
    assert (counters.block_read_bytes, counters.block_write_bytes) == (0, 0)


@pytest.mark.parametrize("tree", [v1_tree, v2_tree])
def test_network_skipped_for_host_network(tmp_path, tree):
    reader = CgroupReader(str(tree(tmp_path)), str(proc_tree(tmp_path)))
    counters = reader.read(CID, network=False)
    assert (counters.net_rx_bytes, counters.net_tx_bytes) == (0, 0)
    assert counters.cpu_usage_ns > 0


def test_network_uses_next_process_when_first_exited(tmp_path):
    root = v1_tree(tmp_path)
    proc = tmp_path / "proc"
    write(proc / "4243" / "net" / "dev", NET_DEV)  # 4242 has no /proc entry: it exited
    counters = CgroupReader(str(root), str(proc)).read(CID)
    assert counters.net_rx_bytes == 2000


@pytest.mark.parametrize("tree", [v1_tree, v2_tree])
def test_missing_container_is_none(tmp_path, tree):
    reader = CgroupReader(str(tree(tmp_path)), str(proc_tree(tmp_path)))
    assert reader.read("cd" * 32) is None


def test_container_with_no_process_left_is_none(tmp_path):
    root = v1_tree(tmp_path)
    write(root / "memory" / "docker" / CID / "cgroup.procs", "")
    assert CgroupReader(str(root), str(proc_tree(tmp_path))).read(CID) is None
    # without network counters the process list is not needed
    assert CgroupReader(str(root), str(proc_tree(tmp_path))).read(CID, network=False)


def test_file_vanishing_mid_read_is_none(tmp_path):
    root = v1_tree(tmp_path)
    (root / "pids" / "docker" / CID / "pids.current").unlink()
    assert CgroupReader(str(root), str(proc_tree(tmp_path))).read(CID) is None


@pytest.mark.parametrize(
    ("usage", "stats", "expected"),
    [
        (1000, {"total_inactive_file": 300, "inactive_file": 100}, 700),
        (1000, {"inactive_file": 100}, 900),  # v2
        (1000, {"total_inactive_file": 1200, "inactive_file": 100}, 900),  # as docker/cli
        (1000, {"total_inactive_file": 1200, "inactive_file": 1500}, 1000),
        (1000, {}, 1000),
    ],
)
def test_memory_used_as_docker_stats_computes_it(usage, stats, expected):
    assert cgroups.memory_used(usage, stats) == expected


def test_net_dev_excludes_loopback():
    assert cgroups.net_dev_totals(NET_DEV.encode()) == (2000, 1000)


# --- a real container on the private engine (cgroup v1, cgroupfs) ---------------------------

_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def parse_size(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)\s*([A-Za-z]+)", text.strip()).groups()
    return float(number) * _UNITS[unit]


@pytest.fixture
def real_container():
    endpoint = docker_engines.endpoints()[0]
    client = docker.DockerClient(base_url=endpoint, timeout=30)
    container = client.containers.run(
        docker_engines.TEST_IMAGE,
        # 3 MB held by the shell (sleep in a loop, so the shell is not replaced by exec)
        ["sh", "-c", "x=$(yes | head -c 3000000); while true; do sleep 3600; done"],
        detach=True,
        network_mode="none",
        mem_limit=64 * 2**20,
    )
    try:
        yield endpoint, client, container
    finally:
        container.remove(force=True)
        client.close()


@pytest.mark.integration
def test_v1_real_container_matches_docker_stats(real_container):
    endpoint, client, container = real_container
    reader = cgroups.reader()
    if reader.unified:
        pytest.skip("this machine runs cgroup v2; the fake-tree tests cover it")
    settled = None
    for _ in range(50):  # wait until the shell has allocated and memory holds still
        time.sleep(0.3)
        now = reader.read(container.id)
        if settled is not None and now.memory_bytes == settled.memory_bytes > 1_000_000:
            break
        settled = now

    before = client.api.stats(container.id, stream=False, one_shot=True)
    counters = reader.read(container.id)
    after = client.api.stats(container.id, stream=False, one_shot=True)
    shown = subprocess.run(
        [
            "docker",
            "-H",
            endpoint,
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}",
            container.id,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    around = reader.read(container.id)

    assert counters is not None
    used, limit = (parse_size(part) for part in shown.split("/"))
    assert limit == 64 * 2**20
    assert counters.memory_limit_bytes == 64 * 2**20
    assert counters.memory_bytes > 1_000_000  # the shell holds its 3 MB string
    # v1 usage_in_bytes is fuzzy by design: each CPU pre-charges a batch of 64 pages
    # (MEMCG_CHARGE_BATCH) that drains later, so two readings moments apart can differ by
    # that much; docker stats shows 4 significant digits.
    fuzz = 64 * 4096 + used * 0.001
    low = min(counters.memory_bytes, around.memory_bytes)
    high = max(counters.memory_bytes, around.memory_bytes)
    assert low - fuzz <= used <= high + fuzz
    assert (
        before["cpu_stats"]["cpu_usage"]["total_usage"]
        <= counters.cpu_usage_ns
        <= after["cpu_stats"]["cpu_usage"]["total_usage"]
    )
    assert counters.cpu_usage_ns > 0
    assert counters.pids == after["pids_stats"]["current"] == 2  # sh and its sleep
    assert (counters.net_rx_bytes, counters.net_tx_bytes) == (0, 0)  # loopback only
    api_read = sum(
        e["value"]
        for e in after["blkio_stats"]["io_service_bytes_recursive"] or []
        if e["op"] == "Read"
    )
    assert counters.block_read_bytes == api_read


@pytest.mark.integration
def test_real_container_gone_reads_none(real_container):
    _, _, container = real_container
    reader = cgroups.reader()
    assert reader.read(container.id) is not None
    container.stop(timeout=0)
    assert reader.read(container.id) is None
