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
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from audit import actions
from audit.services import record
from hosting.models import Container, DesiredState, ObservedState, Site
from monitoring.models import HealthCheck, HealthStatus, SiteHealth

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
    record_results(list(zip(sites, results, strict=True)))
    return len(sites)


def record_results(checked: list[tuple[Site, Result]]) -> None:
    """Store the checks and move each site's health on, in one transaction."""
    threshold = int(settings.HEALTH_FAILURE_THRESHOLD)
    with transaction.atomic():
        HealthCheck.objects.bulk_create(
            [
                HealthCheck(
                    organization_id=site.organization_id,
                    site_id=site.pk,
                    timestamp=result.timestamp,
                    ok=result.ok,
                    status_code=result.status_code,
                    response_time_ms=result.response_time_ms,
                    error=result.error,
                )
                for site, result in checked
            ]
        )
        current = {
            health.site_id: health
            for health in SiteHealth.objects.select_for_update().filter(
                site_id__in=[site.pk for site, _ in checked]
            )
        }
        rows = []
        for site, result in checked:
            before = current.get(site.pk) or SiteHealth(site_id=site.pk)
            after = SiteHealth(
                site_id=site.pk,
                organization_id=site.organization_id,
                status=before.status,
                last_checked_at=result.timestamp,
                last_response_time_ms=result.response_time_ms,
            )
            if result.ok:
                after.consecutive_failures = 0
                after.status = HealthStatus.HEALTHY
                if before.status == HealthStatus.UNHEALTHY:
                    _audit(actions.SITE_RECOVERED, site, after, result)
            else:
                after.consecutive_failures = before.consecutive_failures + 1
                if (
                    after.consecutive_failures >= threshold
                    and before.status != HealthStatus.UNHEALTHY
                ):
                    after.status = HealthStatus.UNHEALTHY
                    _audit(actions.SITE_UNHEALTHY, site, after, result)
            rows.append(after)
        SiteHealth.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["site"],
            update_fields=[
                "organization",
                "status",
                "consecutive_failures",
                "last_checked_at",
                "last_response_time_ms",
            ],
        )


def _audit(action: str, site: Site, health: SiteHealth, result: Result) -> None:
    log.info("site %s: %s (%s)", site, action, result.error or result.status_code)
    record(
        action,
        organization=site.organization,
        target=site,
        changes={
            "status": health.status,
            "consecutive_failures": health.consecutive_failures,
            "status_code": result.status_code,
            "error": result.error,
            "url_path": site.health_check_path,
        },
    )
