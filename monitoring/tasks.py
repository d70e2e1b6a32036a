"""Celery tasks for monitoring. Thin: they claim the job, take ids and call the modules."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from hosting import workers
from hosting.docker import TRANSIENT_ERRORS
from hosting.models import DockerHost, HostStatus
from hostpanel.claims import claim
from hostpanel.retry import backoff
from monitoring import collectors, health, hourly, limits, partitions, retention, rollups, traffic

log = logging.getLogger(__name__)


def _online_host_ids() -> list[str]:
    return [
        str(pk)
        for pk in DockerHost.objects.filter(status=HostStatus.ONLINE).values_list("pk", flat=True)
    ]


@shared_task(acks_late=True, ignore_result=True)
def collect_usage() -> int:
    """Fan out one collection per online host (each host's worker reads its own cgroups)."""
    interval = timedelta(seconds=settings.USAGE_INTERVAL)
    with claim("monitoring.collect_usage", ttl=interval, min_interval=interval * 0.8) as mine:
        if not mine:
            return 0
        host_ids = _online_host_ids()
        for host_id in host_ids:
            collect_host_usage.delay(host_id)
        return len(host_ids)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=2)
def collect_host_usage(self, host_id: str) -> int:
    host = DockerHost.objects.filter(pk=host_id).first()
    if host is None:
        return 0
    ttl = timedelta(seconds=settings.USAGE_INTERVAL * 2)
    with claim(f"monitoring.collect_host_usage:{host_id}", ttl=ttl) as mine:
        if not mine:
            return 0
        try:
            return collectors.collect_host(host)
        except TRANSIENT_ERRORS as exc:
            error = exc
    raise self.retry(exc=error, countdown=backoff(self.request.retries))


@shared_task(acks_late=True, ignore_result=True)
def measure_disk() -> int:
    with claim(
        "monitoring.measure_disk", ttl=timedelta(minutes=5), min_interval=timedelta(minutes=4)
    ) as mine:
        if not mine:
            return 0
        measured = 0
        online = DockerHost.objects.filter(status=HostStatus.ONLINE)
        for host_id in online.filter(workers.hosts_with_worker()).values_list("pk", flat=True):
            measure_host_disk.delay(str(host_id))
        for host in online.exclude(workers.hosts_with_worker()):
            try:
                measured += collectors.measure_disk(host)
            except TRANSIENT_ERRORS as exc:
                log.warning("measure_disk: %s", exc)
        return measured


@shared_task(acks_late=True, ignore_result=True)
def measure_host_disk(host_id: str) -> int:
    """One host's disk sizes, measured on the host's own worker."""
    host = DockerHost.objects.filter(pk=host_id).first()
    if host is None:
        return 0
    try:
        return collectors.measure_disk(host)
    except TRANSIENT_ERRORS as exc:
        log.warning("measure_host_disk: %s", exc)
        return 0


@shared_task(acks_late=True, ignore_result=True)
def ensure_usage_partitions() -> list[str]:
    """PostgreSQL: this month's and the next months' partitions exist before they are needed."""
    with claim(
        "monitoring.ensure_usage_partitions",
        ttl=timedelta(minutes=10),
        min_interval=timedelta(hours=1),
    ) as mine:
        return partitions.ensure() if mine else []


@shared_task(acks_late=True, ignore_result=True)
def enforce_limits() -> int:
    with claim(
        "monitoring.enforce_limits", ttl=timedelta(minutes=5), min_interval=timedelta(minutes=4)
    ) as mine:
        return limits.enforce_limits() if mine else 0


@shared_task(acks_late=True, ignore_result=True)
def run_health_checks() -> int:
    interval = timedelta(seconds=settings.HEALTH_INTERVAL)
    with claim(
        "monitoring.run_health_checks", ttl=interval * 2, min_interval=interval * 0.8
    ) as mine:
        return health.check_all_sites() if mine else 0


@shared_task(acks_late=True, ignore_result=True)
def rollup_recent_days() -> int:
    """Refresh today's rows and finalise yesterday's; re-running gives the same rows."""
    with claim(
        "monitoring.rollup_recent_days",
        ttl=timedelta(minutes=30),
        min_interval=timedelta(minutes=50),
    ) as mine:
        if not mine:
            return 0
        today = timezone.now().date()
        return rollups.rollup_day(today - timedelta(days=1)) + rollups.rollup_day(today)


@shared_task(acks_late=True, ignore_result=True)
def rollup_recent_hours() -> int:
    """Roll the hours that just ended into HourlyUsage (and the last two again)."""
    with claim(
        "monitoring.rollup_recent_hours",
        ttl=timedelta(minutes=30),
        min_interval=timedelta(minutes=4),
    ) as mine:
        return hourly.rollup_recent() if mine else 0


@shared_task(acks_late=True, ignore_result=True)
def apply_retention() -> dict:
    with claim(
        "monitoring.apply_retention", ttl=timedelta(hours=1), min_interval=timedelta(hours=5)
    ) as mine:
        return retention.apply_retention() if mine else {}


@shared_task(acks_late=True, ignore_result=True)
def collect_traffic() -> dict[str, int]:
    """Requests per site since the last tick, from each host's proxy access log."""
    interval = timedelta(seconds=settings.TRAFFIC_INTERVAL)
    with claim(
        "monitoring.collect_traffic", ttl=interval * 12, min_interval=interval * 0.8
    ) as mine:
        if not mine:
            return {}
        sent = []
        for host_id, name in (
            DockerHost.objects.exclude(proxy_access_log="")
            .filter(workers.hosts_with_worker())
            .values_list("pk", "name")
        ):
            collect_host_traffic.delay(str(host_id))
            sent.append(name)
        return traffic.collect_all(exclude=sent)


@shared_task(acks_late=True, ignore_result=True)
def collect_host_traffic(host_id: str) -> int:
    """One host's access log, read on the host's own worker."""
    host = DockerHost.objects.filter(pk=host_id).first()
    if host is None:
        return 0
    ttl = timedelta(seconds=settings.TRAFFIC_INTERVAL * 12)
    with claim(f"monitoring.collect_host_traffic:{host_id}", ttl=ttl) as mine:
        if not mine:
            return 0
        try:
            return traffic.collect_host(host)
        except OSError as exc:
            log.warning("host %s: access log not read: %s", host.name, exc)
            return 0
