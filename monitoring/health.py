"""Health checks: an HTTP GET of each running site's health-check path, concurrently.

A site failing HEALTH_FAILURE_THRESHOLD checks in a row becomes unhealthy (audited once, at
the transition); its first passing check after that makes it healthy again (audited too).
Checks go through `hostpanel.probe` (its one address policy: loopback unless
settings.HEALTH_ALLOW_ANY_ADDRESS).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db.models import OuterRef, Subquery

from hosting.models import Container, DesiredState, ObservedState, Site
from hostpanel import probe
from hostpanel.probe import Result
from monitoring import services

log = logging.getLogger(__name__)

MAX_WORKERS = 32


def check_site(site: Site, timeout: float) -> Result:
    # The serving container's own port (deployments give each container one), else the site's.
    port = getattr(site, "current_port", None) or site.internal_port
    return probe.http_get(site.host.address, port, site.health_check_path, timeout)


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
