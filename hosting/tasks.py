"""Celery tasks for hosts and containers. Thin: they take ids and call services."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from hosting import (
    caddy,
    deployments,
    discovery,
    moves,
    proxy,
    reconcile,
    services,
    sync,
    terminals,
    volumes,
    workers,
)
from hosting.docker import TRANSIENT_ERRORS
from hosting.models import DesiredState, DockerHost, HostStatus, ObservedState, Site
from hostpanel.claims import claim
from hostpanel.retry import backoff

log = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def sync_all_hosts() -> int:
    """Fan out: sync each online host, probe each offline one. Returns tasks sent."""
    interval = timedelta(seconds=settings.SYNC_INTERVAL)
    with claim("hosting.sync_all_hosts", ttl=interval, min_interval=interval * 0.8) as mine:
        if not mine:
            return 0
        sent = 0
        for host_id, status in DockerHost.objects.values_list("pk", "status"):
            if status == HostStatus.ONLINE:
                sync_host.delay(str(host_id))
            elif status == HostStatus.OFFLINE:
                probe_host.delay(str(host_id))
            else:
                continue
            sent += 1
        return sent


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=3)
def sync_host(self, host_id: str) -> str:
    """Reconcile one host; after the retries are spent the host is marked offline."""
    host = DockerHost.objects.filter(pk=host_id).first()
    if host is None:
        log.info("sync_host: host %s no longer exists", host_id)
        return "gone"
    with claim(f"hosting.sync_host:{host_id}", ttl=timedelta(minutes=5)) as mine:
        if not mine:
            return "busy"
        try:
            result = sync.sync_host(host)
        except TRANSIENT_ERRORS as exc:
            if self.request.retries >= self.max_retries:
                services.mark_host_offline(host, exc.reason)
                return "offline"
            error = exc
        else:
            error = None
    if error is not None:
        raise self.retry(exc=error, countdown=backoff(self.request.retries))
    for site_id in result.drifted:
        restore_site.delay(site_id)
    return f"seen {result.seen}, removed {result.removed}, drifted {len(result.drifted)}"


@shared_task(acks_late=True, ignore_result=True)
def probe_host(host_id: str) -> str:
    """An offline host is pinged; when it answers it is online again and sync resumes."""
    host = DockerHost.objects.filter(pk=host_id).first()
    if host is None:
        return "gone"
    with claim(f"hosting.probe_host:{host_id}", ttl=timedelta(minutes=2)) as mine:
        if not mine:
            return "busy"
        status = services.ping_host(host, actor=None).status
    if status == HostStatus.ONLINE:
        for site_id in reconcile.pending_sites(host).values_list("pk", flat=True):
            reconcile_site.delay(str(site_id))
    return status


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=max(1, int(settings.TASK_RETRY_BACKOFF_SECONDS)),
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def reconcile_site(site_id: str) -> str:
    """Converge one site to its desired state (hosting/reconcile.py)."""
    return reconcile.reconcile_site(site_id).status


@shared_task(acks_late=True, ignore_result=True)
def reconcile_pending() -> int:
    """Periodic: send a reconcile for every pending site whose host is not offline (an
    offline host's sites are sent when its probe finds it back)."""
    interval = timedelta(seconds=settings.RECONCILE_INTERVAL)
    with claim("hosting.reconcile_pending", ttl=interval, min_interval=interval * 0.8) as mine:
        if not mine:
            return 0
        site_ids = [str(pk) for pk in reconcile.pending_sites().values_list("pk", flat=True)]
    for site_id in site_ids:
        reconcile_site.delay(site_id)
    return len(site_ids)


@shared_task(
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=max(1, int(settings.TASK_RETRY_BACKOFF_SECONDS)),
    retry_jitter=True,
    max_retries=3,
)
def restore_site(site_id: str) -> str:
    """Sync found a site's container gone behind the panel's back: the reconciler brings it
    back (sync reports drift; only the reconciler changes the engine)."""
    site = Site.objects.alive().filter(pk=site_id).first()
    if site is None or site.desired_state != DesiredState.RUNNING:
        return "not wanted"
    if site.observed_state != ObservedState.MISSING:
        return "already back"
    outcome = reconcile.reconcile_site(site_id)
    return "restarted" if outcome.converged else outcome.status


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=20)
def move_site(self, site_id: str) -> str:
    """Move a site to the host it was asked to go to (hosting/moves.py); waits while the
    reconciler holds the site."""
    outcome = moves.execute(site_id)
    if outcome == "busy":
        raise self.retry(countdown=backoff(self.request.retries))
    return outcome


@shared_task(bind=True, acks_late=True, ignore_result=True)
def run_deployment(self, deployment_id: str) -> str:
    """Run one deployment. Redelivery is harmless: only the worker that claims it runs it."""
    return deployments.execute(deployment_id, worker=self.request.hostname or "")


@shared_task(acks_late=True, ignore_result=True)
def retire_containers(container_ids: list[str]) -> int:
    """Stop and remove the containers a deployment replaced (sent after its drain time)."""
    return deployments.retire_containers(container_ids)


@shared_task(acks_late=True, ignore_result=True)
def reap_deployments() -> dict:
    with claim(
        "hosting.reap_deployments", ttl=timedelta(minutes=2), min_interval=timedelta(seconds=45)
    ) as mine:
        return deployments.reap() if mine else {}


@shared_task(acks_late=True, ignore_result=True)
def discover_hosts() -> dict[str, int]:
    """Ask the configured discovery providers for candidates (none configured: nothing)."""
    if not settings.HOST_DISCOVERY_PROVIDERS:
        return {}
    interval = timedelta(seconds=settings.HOST_DISCOVERY_INTERVAL_SECONDS)
    with claim("hosting.discover_hosts", ttl=interval, min_interval=interval * 0.8) as mine:
        if not mine:
            return {}
        try:
            return discovery.discover()
        except discovery.DiscoveryError as exc:
            log.warning("host discovery: %s", exc)
            return {}


@shared_task(acks_late=True, ignore_result=True)
def purge_terminal_tickets() -> int:
    return terminals.purge_tickets()


@shared_task(acks_late=True, ignore_result=True)
def purge_deleted_volumes() -> int:
    with claim(
        "hosting.purge_deleted_volumes", ttl=timedelta(hours=1), min_interval=timedelta(minutes=50)
    ) as mine:
        return volumes.purge_deleted() if mine else 0


@shared_task(acks_late=True, ignore_result=True)
def trim_deployment_logs() -> int:
    with claim(
        "hosting.trim_deployment_logs", ttl=timedelta(hours=1), min_interval=timedelta(hours=5)
    ) as mine:
        if not mine:
            return 0
        deployments.purge_webhook_deliveries()
        return deployments.trim_old_logs()


@shared_task(acks_late=True, ignore_result=True)
def sync_proxies() -> dict[str, str]:
    """Every host's Caddy gets the config rendered from the database when it holds another
    (a restart left it empty, a load was lost). Per host: what happened."""
    interval = timedelta(seconds=settings.PROXY_RESYNC_INTERVAL)
    with claim("hosting.sync_proxies", ttl=interval * 2, min_interval=interval * 0.8) as mine:
        if not mine:
            return {}
        # A host whose worker is alive loads its own Caddy (its admin API is loopback there).
        outcomes = {}
        for host_id, name in (
            DockerHost.objects.exclude(proxy_admin="")
            .filter(workers.hosts_with_worker())
            .values_list("pk", "name")
        ):
            sync_proxy.delay(str(host_id))
            outcomes[name] = "sent to its worker"
        return proxy.sync_all(exclude=list(outcomes)) | outcomes


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=3)
def sync_proxy(self, host_id: str) -> str:
    """Load one host's Caddy now (its proxy settings changed); retried while unreachable."""
    host = DockerHost.objects.filter(pk=host_id).first()
    if host is None:
        return "gone"
    try:
        loaded = proxy.sync_host(host)
    except caddy.ProxyUnavailable as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
    return loaded.error or ("loaded" if loaded.changed else "unchanged")


@shared_task(acks_late=True, ignore_result=True)
def rescue_host_queues() -> dict[str, int]:
    """The work left on the queue of a host worker that stopped beating goes central."""
    with claim(
        "hosting.rescue_host_queues",
        ttl=timedelta(minutes=5),
        min_interval=timedelta(seconds=settings.HOST_WORKER_TIMEOUT_SECONDS * 0.8),
    ) as mine:
        return workers.rescue_queues() if mine else {}
