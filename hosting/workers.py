"""A Celery worker per Docker host (DESIGN.md, "Scale-out").

A host may run a worker of its own (`bin/host-worker NAME`) that consumes the queue
`HOST_QUEUE_PREFIX + NAME` and beats every HOST_WORKER_HEARTBEAT_SECONDS. While its
heartbeat is recent, the router below sends the host's work there: sync, probes, usage
collection, access-log reading, proxy loads, the reconciler and deployments (builds) of
its sites. Otherwise the same tasks go to the central queue and run over the host's
endpoint. Messages left on the queue of a worker that stopped beating are moved to the
central queue by `rescue_queues` (periodic), so nothing waits for a worker that is gone;
duplicates are harmless (every such task is idempotent and claims its work).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from kombu import Exchange, Producer, Queue

from hosting.models import Container, DockerHost, Site

log = logging.getLogger(__name__)

# Which argument names the host, per task: a host id, a site id (or a moving site's id), a
# deployment id or a list of container ids.
_HOST_ARG = {
    "hosting.tasks.sync_host": "host",
    "hosting.tasks.probe_host": "host",
    "hosting.tasks.sync_proxy": "host",
    "monitoring.tasks.collect_host_usage": "host",
    "monitoring.tasks.collect_host_traffic": "host",
    "monitoring.tasks.measure_host_disk": "host",
    "hosting.tasks.reconcile_site": "site",
    "hosting.tasks.restore_site": "site",
    "hosting.tasks.run_deployment": "deployment",
    "hosting.tasks.move_site": "moving",
    "hosting.tasks.retire_containers": "containers",
}


def queue_name(host: DockerHost | str) -> str:
    name = host if isinstance(host, str) else host.name
    return f"{settings.HOST_QUEUE_PREFIX}{name}"


def _alive_since():
    return timezone.now() - timedelta(seconds=settings.HOST_WORKER_TIMEOUT_SECONDS)


def alive(host: DockerHost) -> bool:
    return host.worker_heartbeat_at is not None and host.worker_heartbeat_at >= _alive_since()


def has_live_worker(host_id) -> bool:
    """From the database (an instance in hand may be older than the last heartbeat)."""
    return DockerHost.objects.filter(hosts_with_worker(), pk=host_id).exists()


def hosts_with_worker() -> Q:
    """Filter for hosts whose worker is alive."""
    return Q(worker_heartbeat_at__gte=_alive_since())


def host_of_task(name: str, args: tuple | list) -> DockerHost | None:
    kind = _HOST_ARG.get(name)
    if kind is None or not args:
        return None
    first = args[0]
    try:
        if kind == "host":
            return DockerHost.objects.filter(pk=first).first()
        if kind == "site":
            site = Site.objects.select_related("host").filter(pk=first).first()
            return site.host if site else None
        if kind == "moving":  # the new host: the container starts and is checked there
            site = Site.objects.select_related("moving_to").filter(pk=first).first()
            return site.moving_to if site else None
        if kind == "deployment":
            site = Site.objects.select_related("host").filter(deployments__pk=first).first()
            return site.host if site else None
        container = Container.objects.select_related("host").filter(pk__in=first).first()
        return container.host if container else None
    except (ValueError, TypeError, ValidationError):  # not an id: the task reports it
        return None


def route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any):
    """Celery router (CELERY_TASK_ROUTES): a host's work to its worker's queue while that
    worker beats; None (the default queue) otherwise. An explicit queue still wins."""
    host = host_of_task(name, args or ())
    if host is not None and alive(host):
        return {"queue": queue_name(host), "routing_key": queue_name(host)}
    return None


# --- the worker's side ----------------------------------------------------------------------


class UnknownHost(Exception):
    pass


def beat(host_name: str, worker_name: str) -> None:
    """The host worker is alive (called at start and every HOST_WORKER_HEARTBEAT_SECONDS)."""
    updated = DockerHost.objects.filter(name=host_name).update(
        worker_name=worker_name, worker_heartbeat_at=timezone.now()
    )
    if not updated:
        raise UnknownHost(f"no Docker host named {host_name!r}: add it in the admin first")


def signed_off(host_name: str, worker_name: str) -> None:
    """A worker stopping cleanly: its host's work goes central at once, not after a timeout."""
    DockerHost.objects.filter(name=host_name, worker_name=worker_name).update(
        worker_heartbeat_at=None
    )


# --- rescue ---------------------------------------------------------------------------------


def rescue_queues() -> dict[str, int]:
    """Move the messages waiting on the queue of each host whose worker stopped beating to
    the central queue. Per host with messages: how many moved."""
    moved: dict[str, int] = {}
    names = DockerHost.objects.exclude(hosts_with_worker()).values_list("name", flat=True)
    for name in names:
        count = move_messages(queue_name(name), settings.CELERY_TASK_DEFAULT_QUEUE)
        if count:
            log.warning("host %s: worker gone, %d task(s) moved to the central queue", name, count)
            moved[name] = count
    return moved


def move_messages(source: str, target: str, limit: int = 10_000) -> int:
    """Republish each message of `source` on `target`, then acknowledge it (a crash between
    the two leaves a duplicate, never a loss)."""
    moved = 0
    exchange = Exchange(target, type="direct")
    with current_app.connection_for_write() as conn:
        channel = conn.default_channel
        from_queue = Queue(source, Exchange(source, type="direct"), routing_key=source)(channel)
        to_queue = Queue(target, exchange, routing_key=target)(channel)
        to_queue.declare()
        producer = Producer(channel)
        while moved < limit:
            message = from_queue.get(no_ack=False)
            if message is None:
                break
            producer.publish(
                message.body,
                exchange=exchange,
                routing_key=target,
                headers=message.headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                **{
                    key: value
                    for key, value in message.properties.items()
                    if key in ("correlation_id", "reply_to", "priority")
                },
            )
            message.ack()
            moved += 1
    return moved
