"""Who holds a listening TCP port on this machine: did the answer come from the site's
container?

With host networking a site's container listens in the machine's own network namespace, so
another process holding the port (the panel itself, say) would answer a health check in the
site's name. For engines on this machine the check therefore asks which sockets listen on
the port in the container's network namespace (/proc/<its pid>/net/tcp and tcp6) and
whether one of the container's processes (its cgroup's `cgroup.procs`) holds one of them
(/proc/<pid>/fd). Where that cannot be read (another machine's engine, no permission, no
cgroup, nothing listening by the time we look) the answer is "cannot tell" (None).
"""

from __future__ import annotations

import ipaddress
import os

LISTEN = "0A"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net/tcp* addresses are 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening_inodes(pid: int, address: str, port: int, proc_root: str = "/proc") -> set[str]:
    """Inodes of the sockets listening on (address or a wildcard, port) in the network
    namespace of process `pid`."""
    wanted = ipaddress.ip_address(address)
    inodes = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            with open(os.path.join(proc_root, str(pid), table)) as rows:
                next(rows, None)  # the header
                for row in rows:
                    fields = row.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    hex_address, hex_port = local.split(":")
                    if state != LISTEN or int(hex_port, 16) != port:
                        continue
                    bound = _address(hex_address)
                    mapped = getattr(bound, "ipv4_mapped", None) or bound
                    if bound.is_unspecified or mapped == wanted:
                        inodes.add(inode)
        except (FileNotFoundError, PermissionError):
            continue
    return inodes


def holds_socket(pids: list[int], inodes: set[str], proc_root: str = "/proc") -> bool | None:
    """Whether one of the processes has one of the sockets open; None when their file
    descriptors cannot be read."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    readable = False
    for pid in pids:
        fd_dir = os.path.join(proc_root, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except (FileNotFoundError, PermissionError):
            continue  # exited meanwhile, or not ours to read
        readable = True
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in wanted:
                    return True
            except OSError:
                continue
    return False if readable else None


def container_answers(
    pids: list[int] | None, address: str, port: int, proc_root: str = "/proc"
) -> bool | None:
    """True when a process of the container listens on (address, port), False when someone
    else does, None when it cannot be told from here."""
    if not pids:
        return None
    inodes = listening_inodes(pids[0], address, port, proc_root)
    if not inodes:
        return None
    return holds_socket(pids, inodes, proc_root)
