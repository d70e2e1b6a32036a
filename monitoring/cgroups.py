"""One container's resource counters, read straight from its cgroup files (v1 and v2).

This is what the Docker daemon itself reads for `docker stats`, without the daemon's one-second
tick: a handful of small file reads, tens of microseconds a container. It works only on the
machine that runs the engine (DESIGN.md, "Scale-out": each host's worker reads its own).

Layouts understood (`<id>` is the full 64-hex container id):

- cgroup v1, cgroupfs driver: `<root>/<controller>/docker/<id>/`
- cgroup v1, systemd driver:  `<root>/<controller>/system.slice/docker-<id>.scope/`
- cgroup v2 (unified), likewise without the controller level: `<root>/docker/<id>/`,
  `<root>/system.slice/docker-<id>.scope/`

A host is v2 when `<root>/cgroup.controllers` exists (the root itself is the cgroup2 mount);
the v1 "hybrid" layout (a tmpfs with one mount per controller plus `unified/`) reads v1.

Memory is computed as `docker stats` does (docker/cli `calculateMemUsageUnixNoCache`): usage
minus `total_inactive_file` (v1) or `inactive_file` (v2), only when that is below usage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PROC_ROOT = "/proc"
# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages).
UNLIMITED = 1 << 62

# Where a container's cgroup lives below a hierarchy, per cgroup driver.
_RELATIVE_DIRS = ("docker/{id}", "system.slice/docker-{id}.scope")
# v1 controller mount names: cpuacct is often co-mounted with cpu (`cpu,cpuacct`).
_V1_CONTROLLERS = {
    "memory": ("memory",),
    "cpuacct": ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"),
    "blkio": ("blkio",),
    "pids": ("pids",),
}


@dataclass(frozen=True, slots=True)
class Counters:
    """One reading of a container. CPU, network and block values are cumulative counters."""

    cpu_usage_ns: int
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    net_rx_bytes: int
    net_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int


def memory_used(usage: int, stats: dict[str, int]) -> int:
    """Memory in use as `docker stats` shows it: usage without the inactive file cache."""
    inactive = stats.get("total_inactive_file")  # cgroup v1
    if inactive is not None and inactive < usage:
        return usage - inactive
    inactive = stats.get("inactive_file", 0)  # cgroup v2 (and v1 without hierarchy totals)
    if inactive < usage:
        return usage - inactive
    return usage


def memory_limit(value: int | str) -> int:
    """A memory limit in bytes, 0 for none ('max' in v2, a near-2^63 number in v1)."""
    if isinstance(value, str):
        value = value.strip()
        if value == "max":
            return 0
        value = int(value)
    return 0 if value >= UNLIMITED else value


def _read(path: str) -> bytes:
    # os.open/os.read: a third cheaper than open() for these small pseudo-files.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def _read_int(path: str) -> int:
    return int(_read(path))


def _flat_keyed(data: bytes, wanted: tuple[bytes, ...]) -> dict[str, int]:
    """The wanted keys of a `key value` per line file (memory.stat, cpu.stat)."""
    out: dict[str, int] = {}
    data = b"\n" + data
    for key in wanted:
        start = data.find(b"\n" + key + b" ")
        if start >= 0:
            start += len(key) + 2
            end = data.find(b"\n", start)
            out[key.decode()] = int(data[start : end if end >= 0 else None])
    return out


_MEMORY_KEYS = (b"total_inactive_file", b"inactive_file")


def _blkio_v1(data: bytes) -> tuple[int, int]:
    """Read and Write totals of blkio.throttle.io_service_bytes (`MAJ:MIN Op bytes` lines)."""
    read = write = 0
    for line in data.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue  # the final `Total N` line
        if parts[1] == b"Read":
            read += int(parts[2])
        elif parts[1] == b"Write":
            write += int(parts[2])
    return read, write


def _io_stat_v2(data: bytes) -> tuple[int, int]:
    """rbytes and wbytes summed over devices of io.stat (`MAJ:MIN rbytes=.. wbytes=.. ...`)."""
    read = write = 0
    for line in data.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition(b"=")
            if key == b"rbytes":
                read += int(value)
            elif key == b"wbytes":
                write += int(value)
    return read, write


def net_dev_totals(data: bytes) -> tuple[int, int]:
    """Received and transmitted bytes of /proc/<pid>/net/dev, loopback excluded."""
    rx = tx = 0
    for line in data.splitlines()[2:]:
        name, sep, rest = line.partition(b":")
        if not sep or name.strip() == b"lo":
            continue
        fields = rest.split()
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


class CgroupReader:
    """Reads containers below one cgroup root. Cheap to keep: it only caches where things are."""

    def __init__(
        self, cgroup_root: str = DEFAULT_CGROUP_ROOT, proc_root: str = DEFAULT_PROC_ROOT
    ) -> None:
        self.cgroup_root = cgroup_root
        self.proc_root = proc_root
        self.unified = os.path.exists(os.path.join(cgroup_root, "cgroup.controllers"))
        self._mounts = {} if self.unified else self._v1_mounts()
        self._layout = 0  # index into _RELATIVE_DIRS that matched last; tried first

    def _v1_mounts(self) -> dict[str, str]:
        mounts = {}
        for controller, names in _V1_CONTROLLERS.items():
            for name in names:
                path = os.path.join(self.cgroup_root, name)
                if os.path.isdir(path):
                    mounts[controller] = path
                    break
        return mounts

    def relative_dir(self, docker_id: str) -> str | None:
        """The container's cgroup below each hierarchy, or None when it has none (not running)."""
        base = self.cgroup_root if self.unified else self._mounts.get("memory")
        if base is None:
            return None
        order = [self._layout, *(i for i in range(len(_RELATIVE_DIRS)) if i != self._layout)]
        for index in order:
            relative = _RELATIVE_DIRS[index].format(id=docker_id)
            if os.path.isdir(os.path.join(base, relative)):
                self._layout = index
                return relative
        return None

    def pids(self, docker_id: str) -> list[int] | None:
        """The container's processes (host pids), or None when its cgroup is not here."""
        relative = self.relative_dir(docker_id)
        if relative is None:
            return None
        base = self.cgroup_root if self.unified else self._mounts["memory"]
        try:
            return [int(pid) for pid in _read(os.path.join(base, relative, "cgroup.procs")).split()]
        except FileNotFoundError:
            return None

    def read(self, docker_id: str, *, network: bool = True) -> Counters | None:
        """The container's counters, or None when its cgroup is not there (stopped, gone).

        `network=False` skips the network counters (0): for containers on the host's network,
        /proc/<pid>/net/dev would be the host's own interfaces.
        """
        relative = self.relative_dir(docker_id)
        if relative is None:
            return None
        try:
            if self.unified:
                return self._read_v2(os.path.join(self.cgroup_root, relative), network)
            return self._read_v1(relative, network)
        except (FileNotFoundError, ProcessLookupError):
            return None  # the container stopped while we were reading it

    def _read_v1(self, relative: str, network: bool) -> Counters:
        memory_dir = os.path.join(self._mounts["memory"], relative)
        usage = _read_int(os.path.join(memory_dir, "memory.usage_in_bytes"))
        stats = _flat_keyed(_read(os.path.join(memory_dir, "memory.stat")), _MEMORY_KEYS)
        limit = memory_limit(_read_int(os.path.join(memory_dir, "memory.limit_in_bytes")))
        cpu = 0
        if "cpuacct" in self._mounts:
            cpu = _read_int(os.path.join(self._mounts["cpuacct"], relative, "cpuacct.usage"))
        pids = 0
        if "pids" in self._mounts:
            pids = _read_int(os.path.join(self._mounts["pids"], relative, "pids.current"))
        block_read = block_write = 0
        if "blkio" in self._mounts:
            blkio_dir = os.path.join(self._mounts["blkio"], relative)
            block_read, block_write = _blkio_v1(
                _read(os.path.join(blkio_dir, "blkio.throttle.io_service_bytes"))
            )
        rx, tx = self._network(memory_dir) if network else (0, 0)
        return Counters(
            cpu_usage_ns=cpu,
            memory_bytes=memory_used(usage, stats),
            memory_limit_bytes=limit,
            pids=pids,
            net_rx_bytes=rx,
            net_tx_bytes=tx,
            block_read_bytes=block_read,
            block_write_bytes=block_write,
        )

    def _read_v2(self, directory: str, network: bool) -> Counters:
        usage = _read_int(os.path.join(directory, "memory.current"))
        stats = _flat_keyed(_read(os.path.join(directory, "memory.stat")), _MEMORY_KEYS)
        limit = memory_limit(_read(os.path.join(directory, "memory.max")).decode())
        cpu_stat = _flat_keyed(_read(os.path.join(directory, "cpu.stat")), (b"usage_usec",))
        pids = _read_int(os.path.join(directory, "pids.current"))
        io_path = os.path.join(directory, "io.stat")
        # io.stat is absent when the io controller is not enabled for the subtree.
        block_read, block_write = _io_stat_v2(_read(io_path)) if os.path.exists(io_path) else (0, 0)
        rx, tx = self._network(directory) if network else (0, 0)
        return Counters(
            cpu_usage_ns=cpu_stat.get("usage_usec", 0) * 1000,
            memory_bytes=memory_used(usage, stats),
            memory_limit_bytes=limit,
            pids=pids,
            net_rx_bytes=rx,
            net_tx_bytes=tx,
            block_read_bytes=block_read,
            block_write_bytes=block_write,
        )

    def _network(self, directory: str) -> tuple[int, int]:
        """Counters of the container's network namespace, seen through one of its processes."""
        for pid in _read(os.path.join(directory, "cgroup.procs")).split()[:5]:
            try:
                return net_dev_totals(_read(os.path.join(self.proc_root, pid.decode(), "net/dev")))
            except FileNotFoundError:
                continue  # that process just exited: try the next one
        raise ProcessLookupError("no process left in the container's cgroup")


@lru_cache(maxsize=8)
def reader(cgroup_root: str = DEFAULT_CGROUP_ROOT, proc_root: str = DEFAULT_PROC_ROOT):
    """A shared reader per root pair (the v1/v2 probe and mount lookup happen once)."""
    return CgroupReader(cgroup_root, proc_root)


def read_container(
    docker_id: str,
    *,
    cgroup_root: str = DEFAULT_CGROUP_ROOT,
    proc_root: str = DEFAULT_PROC_ROOT,
    network: bool = True,
) -> Counters | None:
    """Counters of one container from its cgroup files, or None when its cgroup is not there."""
    return reader(cgroup_root, proc_root).read(docker_id, network=network)
