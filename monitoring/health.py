"""Health checks: an HTTP GET of each running site's health-check path, concurrently.

A site failing HEALTH_FAILURE_THRESHOLD checks in a row becomes unhealthy (audited once, at
the transition); its first passing check after that makes it healthy again (audited too).
Checks only ever go to loopback addresses unless settings.HEALTH_ALLOW_ANY_ADDRESS is True.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from hosting.models import Container, DesiredState, ObservedState, Site
from monitoring import services

log = logging.getLogger(__name__)

MAX_WORKERS = 32
REFUSED = "refused: non-loopback address"


@dataclass(frozen=True)
class Result:
    timestamp: datetime
    ok: bool
    status_code: int | None = None
    response_time_ms: float | None = None
    error: str = ""


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def address_allowed(address: str) -> bool:
    return settings.HEALTH_ALLOW_ANY_ADDRESS or is_loopback(address)


def check_url(address: str, port: int, path: str, timeout: float) -> Result:
    """GET http://address:port/path once; redirects are not followed (3xx is a pass)."""
    started_at = timezone.now()
    if not address_allowed(address):
        return Result(started_at, ok=False, error=REFUSED)
    if not path.startswith("/"):
        path = "/" + path
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    start = time.perf_counter()
    try:
        conn.request("GET", path, headers={"User-Agent": "hostpanel-health/1", "Accept": "*/*"})
        response = conn.getresponse()
        elapsed_ms = (time.perf_counter() - start) * 1000
        status = response.status
    except Exception as exc:  # any failure to get a status line is a failed check
        elapsed_ms = (time.perf_counter() - start) * 1000
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Result(started_at, ok=False, response_time_ms=elapsed_ms, error=error[:255])
    finally:
        conn.close()
    return Result(
        started_at,
        ok=status < 400,
        status_code=status,
        response_time_ms=elapsed_ms,
        error="" if status < 400 else f"HTTP {status}",
    )


def check_site(site: Site, timeout: float) -> Result:
    # The serving container's own port (deployments give each container one), else the site's.
    port = getattr(site, "current_port", None) or site.internal_port
    return check_url(site.host.address, port, site.health_check_path, timeout)


def sites_to_check():
    return (
        Site.objects.alive()
        .filter(
            desired_state=DesiredState.RUNNING,
            observed_state=ObservedState.RUNNING,
        )
        .select_related("host", "organization")
        .annotate(
            current_port=Subquery(
                Container.objects.serving()
                .filter(site=OuterRef("pk"), host=OuterRef("host"))
                .exclude(state=ObservedState.MISSING)
                .order_by("-created")
                .values("port")[:1]
            )
        )
    )


def check_all_sites() -> int:
    """Check every running site once and record the results. Returns sites checked."""
    sites = list(sites_to_check())
    if not sites:
        return 0
    timeout = float(settings.HEALTH_TIMEOUT_SECONDS)
    # Threads only do HTTP; every database write happens below, in this thread.
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(sites))) as pool:
        results = list(pool.map(lambda site: check_site(site, timeout), sites))
    services.record_health(list(zip(sites, results, strict=True)))
    return len(sites)
