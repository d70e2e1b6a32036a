"""Upkeep: retire replaced containers, reap deployments whose worker died, re-send lost
queued ones, purge old webhook deliveries."""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import actions
from audit.services import record
from hosting import caddy, proxy
from hosting import docker as engine
from hosting.deployments.pipeline import remove_unswitched_containers, workdir_of
from hosting.deployments.queue import kick_site_queue
from hosting.deployments.requests import transition
from hosting.models import (
    ACTIVE_DEPLOYMENT_STATES,
    Container,
    Deployment,
    DeploymentStatus,
    WebhookDelivery,
)

log = logging.getLogger(__name__)
S = DeploymentStatus


def retire_containers(container_ids) -> int:
    """Stop replaced containers gracefully (SIGTERM, DEPLOY_STOP_TIMEOUT_SECONDS to exit,
    then SIGKILL) and remove them. Idempotent; an unreachable host is left to the reaper."""
    retired = 0
    containers = Container.objects.filter(pk__in=container_ids, retired_at__isnull=False)
    routed: dict = {}
    for container in containers.select_related("host", "site__organization"):
        if not _routed_elsewhere(container.host, routed):
            continue  # the proxy may still send visitors here: the reaper tries again later
        try:
            engine.stop_and_remove(
                container.host, container.docker_id, timeout=settings.DEPLOY_STOP_TIMEOUT_SECONDS
            )
        except (engine.HostUnavailable, engine.HostError, engine.SpecRejected) as exc:
            log.warning("replaced container %s not removed: %s", container.docker_id, exc)
            continue
        with transaction.atomic():
            deleted, _ = Container.objects.filter(pk=container.pk).delete()
            if deleted and container.site is not None:
                record(
                    actions.CONTAINER_RETIRE,
                    organization=container.site.organization,
                    target=container.site,
                    changes={
                        "container": container.name,
                        "docker_id": container.docker_id[:12],
                        "retired_at": container.retired_at.isoformat()
                        if container.retired_at
                        else None,
                    },
                )
        retired += deleted
    return retired


def _routed_elsewhere(host, routed: dict) -> bool:
    """Whether the host's proxy holds the current config (so no route points at a retired
    container); loaded once per host per call."""
    if host.pk not in routed:
        try:
            routed[host.pk] = not proxy.sync_host(host).error
        except caddy.ProxyUnavailable as exc:
            log.warning("host %s: proxy unreachable; retirement waits: %s", host.name, exc)
            routed[host.pk] = False
    return routed[host.pk]


# --- the queue, the reaper, old logs -------------------------------------------------------


def reap(now=None) -> dict[str, int]:
    """Fail running deployments whose worker stopped beating; re-send forgotten queued ones."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.DEPLOY_STALE_SECONDS)
    reaped = 0
    for deployment in Deployment.objects.filter(
        status__in=ACTIVE_DEPLOYMENT_STATES, heartbeat_at__lt=stale
    ):
        if transition(
            deployment,
            ACTIVE_DEPLOYMENT_STATES,
            S.FAILED,
            error="The worker running this deployment stopped responding.",
        ):
            remove_unswitched_containers(deployment)
            shutil.rmtree(workdir_of(deployment.pk), ignore_errors=True)  # if it ran here
            reaped += 1
    kicked = 0
    waiting = (
        Deployment.objects.filter(status=S.QUEUED, created_at__lt=stale)
        .values_list("site_id", flat=True)
        .distinct()
    )
    for site_id in set(waiting):
        kick_site_queue(site_id)
        kicked += 1
    # Replaced containers whose retire task was lost (broker down, worker killed).
    overdue = now - timedelta(
        seconds=settings.DEPLOY_DRAIN_SECONDS + settings.DEPLOY_STOP_TIMEOUT_SECONDS + 60
    )
    leftovers = list(Container.objects.filter(retired_at__lt=overdue).values_list("pk", flat=True))
    swept = retire_containers(leftovers) if leftovers else 0
    return {"reaped": reaped, "kicked": kicked, "retired": swept}


def purge_webhook_deliveries(now=None) -> int:
    """Delivery ids are kept as long as a replay could matter (DEPLOY_LOG_RETENTION_DAYS)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DEPLOY_LOG_RETENTION_DAYS)
    deleted, _ = WebhookDelivery.objects.filter(received_at__lt=cutoff).delete()
    return deleted
