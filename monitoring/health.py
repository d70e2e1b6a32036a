"""Health checks: an HTTP GET of each running site's health-check path, concurrently.

A site failing HEALTH_FAILURE_THRESHOLD checks in a row becomes unhealthy (audited once, at
the transition); its first passing check after that makes it healthy again (audited too).
Checks go through `hostpanel.probe` (its one address policy: loopback unless
settings.HEALTH_ALLOW_ANY_ADDRESS). On host networking with an engine on this machine an
answer counts only when it came from the site's serving container (`monitoring.listeners`):
another process holding the port fails the check, saying so.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db.models import OuterRef, Subquery

from hosting.models import Container, DesiredState, ObservedState, Site
from hostpanel import probe
from hostpanel.probe import Result
from monitoring import collectors, listeners, services

log = logging.getLogger(__name__)

MAX_WORKERS = 32


def check_site(site: Site, timeout: float) -> Result:
    # The serving container's own port (deployments give each container one), else the site's.
    port = getattr(site, "current_port", None) or site.internal_port
    result = probe.http_get(site.host.address, port, site.health_check_path, timeout)
    if result.ok and answered_by_another_process(site, port):
        return dataclasses.replace(
            result,
            ok=False,
            error=f"Port {port} answered, but not from the site's container: another "
            "process on the host holds it.",
        )
    return result


def answered_by_another_process(site: Site, port: int) -> bool:
    """On host networking with a local engine: whether the port is held by a process outside
    the site's serving container (see monitoring.listeners; "cannot tell" is not a failure)."""
    docker_id = getattr(site, "current_docker_id", None)
    if not docker_id or site.host.network_mode != "host" or not collectors.is_local(site.host):
        return False
    reader = collectors.cgroup_reader()
    pids = reader.pids(docker_id)
    verdict = listeners.container_answers(pids, site.host.address, port, reader.proc_root)
    return verdict is False


def sites_to_check():
    serving = (
        Container.objects.serving()
        .filter(site=OuterRef("pk"), host=OuterRef("host"))
        .exclude(state=ObservedState.MISSING)
        .order_by("-created")
    )
    return (
        Site.objects.alive()
        .filter(
            desired_state=DesiredState.RUNNING,
            observed_state=ObservedState.RUNNING,
        )
        .select_related("host", "organization")
        .annotate(
            current_port=Subquery(serving.values("port")[:1]),
            current_docker_id=Subquery(serving.values("docker_id")[:1]),
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
