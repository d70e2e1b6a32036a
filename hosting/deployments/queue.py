"""Where deployment work is sent to the workers: by task name, through `hosting.queue`,
the one seam tests replace."""

from __future__ import annotations

from django.conf import settings

from hosting import queue
from hosting.models import ACTIVE_DEPLOYMENT_STATES, Deployment, DeploymentStatus


def enqueue(deployment_id) -> None:
    queue.send("run_deployment", str(deployment_id))


def schedule_retirement(container_ids: list[str]) -> None:
    """Retire the replaced containers once requests already sent to them have finished."""
    queue.send("retire_containers", container_ids, countdown=settings.DEPLOY_DRAIN_SECONDS)


def kick_site_queue(site_id) -> None:
    """Send the site's oldest queued deployment to a worker (when none is running)."""
    nxt = (
        Deployment.objects.filter(site_id=site_id, status=DeploymentStatus.QUEUED)
        .order_by("number")
        .first()
    )
    if (
        nxt is not None
        and not Deployment.objects.filter(
            site_id=site_id, status__in=ACTIVE_DEPLOYMENT_STATES
        ).exists()
    ):
        enqueue(nxt.pk)
