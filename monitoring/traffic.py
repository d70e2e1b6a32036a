"""Requests per site, from each host's Caddy access log (JSON lines; hosting/proxy.py turns
it on when the host has `proxy_access_log`).

Each collection tick reads what was appended since the last one (the cursor: the file's
inode and a byte offset), complete lines only, and writes one TrafficSample per site that
had requests, with the new cursor, in one transaction: a crash re-reads, never skips or
counts twice. When Caddy has rolled the file, the rest of the old one (found by its inode
in the same folder) is read first, so nothing between two ticks is lost.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from hosting import caddy, proxy, reconcile
from hosting import services as hosting_services
from hosting.models import DesiredState, DockerHost, Domain, ObservedState, Site
from monitoring import services
from monitoring.models import AccessLogCursor, TrafficSample

log = logging.getLogger(__name__)

# At most this much log is read per host per tick; the rest waits for the next one.
MAX_BYTES_PER_TICK = 64 * 2**20
THROTTLE_WINDOW_SECONDS = 60


@dataclass
class Tally:
    requests: int = 0
    statuses: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])
    throttled: int = 0
    bytes_sent: int = 0
    durations: list[float] = field(default_factory=list)
    last_ts: float = 0.0  # the last visit: uptime bots do not count (they would keep it awake)

    def add(self, status: int, size: int, duration: float, ts: float, bot: bool = False) -> None:
        self.requests += 1
        klass = status // 100
        if 1 <= klass <= 5:
            self.statuses[klass - 1] += 1
        self.throttled += status == 429
        self.bytes_sent += size
        self.durations.append(duration)
        if not bot:
            self.last_ts = max(self.last_ts, ts)

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.statuses = [a + b for a, b in zip(self.statuses, other.statuses, strict=True)]
        self.throttled += other.throttled
        self.bytes_sent += other.bytes_sent
        self.durations += other.durations
        self.last_ts = max(self.last_ts, other.last_ts)

    def sample(self, site: Site, at: datetime) -> TrafficSample:
        ordered = sorted(self.durations)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else 0.0
        return TrafficSample(
            organization_id=site.organization_id,
            site=site,
            timestamp=at,
            requests=self.requests,
            status_1xx=self.statuses[0],
            status_2xx=self.statuses[1],
            status_3xx=self.statuses[2],
            status_4xx=self.statuses[3],
            status_5xx=self.statuses[4],
            status_429=self.throttled,
            bytes_sent=self.bytes_sent,
            response_time_avg_ms=sum(ordered) / len(ordered) * 1000 if ordered else 0.0,
            response_time_p95_ms=p95 * 1000,
            last_request_at=datetime.fromtimestamp(self.last_ts, UTC) if self.last_ts else None,
        )


def tally_lines(data: bytes) -> dict[str, Tally]:
    """Per requested host name (lowercase, no port): the requests in these log lines.
    Lines that are not access entries are skipped."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    loads = orjson.loads
    bots = tuple(agent.lower() for agent in settings.SLEEP_IGNORE_USER_AGENTS)
    for line in data.splitlines():
        try:
            entry = loads(line)
            request = entry["request"]
            name = request["host"]
            status = int(entry["status"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        name = name.rsplit(":", 1)[0] if not name.endswith("]") else name
        agent = ((request.get("headers") or {}).get("User-Agent") or [""])[0].lower()
        tallies[name.lower()].add(
            status,
            int(entry.get("size") or 0),
            float(entry.get("duration") or 0.0),
            float(entry.get("ts") or 0.0),
            bot=any(bot in agent for bot in bots) if bots and agent else False,
        )
    return tallies


def site_names(host: DockerHost) -> dict[str, Site]:
    """Every name the host's proxy may route, to its site (deleted sites' old names too:
    their last requests still count)."""
    sites = {s.pk: s for s in Site.objects.filter(host=host).select_related("organization")}
    names = {site.subdomain.lower(): site for site in sites.values()}
    for hostname, site_id in Domain.objects.filter(site__in=list(sites)).values_list(
        "hostname", "site_id"
    ):
        names[hostname.lower()] = sites[site_id]
    return names


def _rolled_file(path: Path, inode: int) -> Path | None:
    """The rolled-away file that still has this inode (Caddy renames it beside the log)."""
    for candidate in path.parent.glob(f"{path.stem}-*{path.suffix}"):
        try:
            if candidate.stat().st_ino == inode:
                return candidate
        except FileNotFoundError:
            continue
    return None


def _read_complete_lines(path: Path, offset: int, limit: int) -> bytes:
    with open(path, "rb") as stream:
        stream.seek(offset)
        data = stream.read(limit)
    return data[: data.rfind(b"\n") + 1]


def collect_host(host: DockerHost, now: datetime | None = None) -> int:
    """Read the host's access log since the last tick; returns requests counted."""
    if not host.proxy_access_log:
        return 0
    path = Path(host.proxy_access_log)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    cursor, _ = AccessLogCursor.objects.get_or_create(host=host)
    chunks: list[bytes] = []
    budget = MAX_BYTES_PER_TICK
    offset = cursor.offset
    if cursor.inode and cursor.inode != stat.st_ino:
        rolled = _rolled_file(path, cursor.inode)
        if rolled is not None:
            chunks.append(_read_complete_lines(rolled, cursor.offset, budget))
            budget -= len(chunks[-1])
        else:
            log.warning("host %s: access log rolled away unread after byte %s", host.name, offset)
        offset = 0
    elif stat.st_size < offset:  # truncated in place
        offset = 0
    fresh = _read_complete_lines(path, offset, max(budget, 0)) if budget > 0 else b""
    chunks.append(fresh)
    if not any(chunks) and cursor.inode == stat.st_ino:
        return 0

    names = site_names(host)
    tallies: dict[str, Tally] = defaultdict(Tally)
    for chunk in chunks:
        for name, tally in tally_lines(chunk).items():
            tallies[name].merge(tally)
    per_site: dict[object, Tally] = defaultdict(Tally)
    sites: dict[object, Site] = {}
    for name, tally in tallies.items():
        site = names.get(name)
        if site is None:
            continue  # an unknown name: its 404 is the proxy's, not a site's
        sites[site.pk] = site
        per_site[site.pk].merge(tally)
    at = now or timezone.now()
    with transaction.atomic():
        TrafficSample.objects.bulk_create(
            tally.sample(sites[pk], at) for pk, tally in per_site.items()
        )
        AccessLogCursor.objects.filter(pk=cursor.pk).update(
            inode=stat.st_ino, offset=offset + len(fresh), read_at=at
        )
    enforce_request_limits(host, at)
    put_idle_sites_to_sleep(host, at)
    return sum(t.requests for t in per_site.values())


def put_idle_sites_to_sleep(host: DockerHost, now: datetime) -> list[str]:
    """Sites with `sleep_after_minutes` that had no visitor (uptime bots aside) for that
    long since they last started go to sleep: the reconciler stops their container and the
    proxy sends the next visitor to the panel, which wakes them. Returns their slugs."""
    candidates = Site.objects.alive().filter(
        host=host,
        sleep_after_minutes__isnull=False,
        asleep_since__isnull=True,
        desired_state=DesiredState.RUNNING,
        observed_state=ObservedState.RUNNING,
    )
    last_visits = dict(
        TrafficSample.objects.filter(site__in=candidates, last_request_at__isnull=False)
        .values("site")
        .annotate(last=Max("last_request_at"))
        .values_list("site", "last")
    )
    slept = []
    for site in candidates.select_related("organization", "host"):
        active = [t for t in (last_visits.get(site.pk), site.reconciled_at) if t is not None]
        if not active or now - max(active) < timedelta(minutes=site.sleep_after_minutes):
            continue
        if hosting_services.put_to_sleep(site):
            reconcile.converge_now(site)
            slept.append(site.slug)
    return slept


def enforce_request_limits(host: DockerHost, now: datetime) -> bool:
    """Seed 002's requests_per_minute, at the edge: a site whose requests of the last minute
    (read from the log; the proxy's own 429s not counted) pass its limit is answered 429 by
    the proxy for a minute; an ended throttle is lifted. Returns whether the proxy changed."""
    window = now - timedelta(seconds=THROTTLE_WINDOW_SECONDS)
    counts = dict(
        TrafficSample.objects.filter(site__host=host, timestamp__gt=window)
        .values("site")
        .annotate(served=Sum(F("requests") - F("status_429")))
        .values_list("site", "served")
    )
    changed = False
    over = Site.objects.filter(
        pk__in=list(counts), limits__requests_per_minute__gt=0
    ).select_related("limits", "organization")
    for site in over:
        allowed = site.limits.requests_per_minute
        throttled = site.throttled_until is not None and site.throttled_until > now
        if counts[site.pk] > allowed and not throttled:
            until = now + timedelta(seconds=THROTTLE_WINDOW_SECONDS)
            changed |= services.throttle_site(site, until, counts[site.pk], allowed)
    lifted = Site.objects.filter(host=host, throttled_until__lte=now).update(throttled_until=None)
    changed |= bool(lifted)
    if changed:
        try:
            proxy.sync_host(host)
        except caddy.ProxyUnavailable as exc:
            log.warning("host %s: throttle not applied yet: %s", host.name, exc)
    return changed


def collect_all(now: datetime | None = None, exclude: list[str] | None = None) -> dict[str, int]:
    """Every host whose proxy writes an access log this machine can read (but those named
    in `exclude`: their own workers read theirs)."""
    counted = {}
    for host in DockerHost.objects.exclude(proxy_access_log="").exclude(name__in=exclude or []):
        try:
            counted[host.name] = collect_host(host, now)
        except OSError as exc:
            log.warning("host %s: access log not read: %s", host.name, exc)
    return counted
