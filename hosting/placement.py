"""Where a new site runs: the online, not draining host whose labels the site requires and
whose free capacity holds its limits, the one with the most memory left. Capacity is the
host's size as its engine reports it times the over-commit factors; what is reserved is the
limits of the live sites placed there (reservations, not usage: a site may use all of its
limits at once)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce

from hosting.models import DockerHost, HostStatus
from hosting.runtime import NoHostAvailable

UNKNOWN = float(2**40)  # a host never pinged reports no size: roomy rather than full


@dataclass(frozen=True)
class Room:
    host: DockerHost
    memory_mb: float  # free
    cpu_percent: float  # free


def rooms(hosts=None) -> list[Room]:
    """Free memory and CPU of each host, after the reservations of its live sites."""
    live = Q(sites__deleted_at__isnull=True)
    rows = (hosts if hosts is not None else DockerHost.objects.all()).annotate(
        reserved_mb=Coalesce(Sum("sites__limits__memory_mb", filter=live), 0),
        reserved_cpu=Coalesce(Sum("sites__limits__cpu_percent", filter=live), 0),
    )
    found = []
    for host in rows:
        memory = host.memory_bytes / 2**20 * settings.PLACEMENT_MEMORY_OVERCOMMIT
        cpu = host.cpus * 100 * settings.PLACEMENT_CPU_OVERCOMMIT
        found.append(
            Room(
                host,
                memory - host.reserved_mb if host.memory_bytes else UNKNOWN,
                cpu - host.reserved_cpu if host.cpus else UNKNOWN,
            )
        )
    return found


def labels_match(host: DockerHost, required: dict[str, str]) -> bool:
    labels = host.labels or {}
    return all(str(labels.get(key)) == str(value) for key, value in required.items())


def choose_host(
    memory_mb: int, cpu_percent: int = 0, labels: dict[str, str] | None = None
) -> DockerHost:
    """The host for a new site; NoHostAvailable says why none fits."""
    why: list[str] = []
    best: Room | None = None
    for room in rooms(DockerHost.objects.order_by("name")):
        refused = why_not(room, memory_mb, cpu_percent, labels or {})
        if refused:
            why.append(refused)
        elif best is None or room.memory_mb > best.memory_mb:
            best = room
    if best is None:
        raise NoHostAvailable(
            "No Docker host can take the site: " + ("; ".join(why) or "none is registered") + "."
        )
    return best.host


def why_not(room: Room, memory_mb: int, cpu_percent: int, required: dict[str, str]) -> str:
    """Why the host cannot take a site with these limits and labels; "" when it can."""
    host = room.host
    if host.status != HostStatus.ONLINE:
        return f"{host.name} is {host.status}"
    if host.draining:
        return f"{host.name} is draining"
    if not labels_match(host, required):
        return f"{host.name} lacks the labels {required}"
    if room.memory_mb < memory_mb:
        return f"{host.name} has {room.memory_mb:.0f} MB free of {memory_mb}"
    if room.cpu_percent < cpu_percent:
        return f"{host.name} has {room.cpu_percent:.0f} % CPU free of {cpu_percent}"
    return ""
