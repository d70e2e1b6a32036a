"""Acting on usage limits: a site past its monthly bandwidth or its disk limit.

Measured per live site with a handful of aggregate queries (never a Python loop over samples):

- bandwidth this month = the daily rollups of this month's days before today
  (DailyUsage.total_bandwidth_mb) + today's samples (sum of UsageSample.bandwidth_bytes);
- disk = the container's last measured writable-layer size (Container.disk_bytes), or else
  the latest sample's copy of it, plus what its /data volume holds (Site.volume_bytes).

The first time in a month a site is past a limit, a LimitBreach row (unique per site, limit
and month) and a `site.limit_exceeded` audit entry record it, and the organization's policy
(OrganizationQuota.over_limit_policy) is applied: "notify" only records, "stop" stops the site.
The site is stopped before the breach is recorded, so a crash in between leaves the breach
unrecorded and the next run stops (a no-op) and records it, instead of a recorded breach
whose site never stopped.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from django.db.models import OuterRef, Subquery, Sum
from django.utils import timezone

from hosting import services
from hosting.models import Container, OrganizationQuota, Site
from monitoring import services as monitoring_services
from monitoring.models import DailyUsage, LimitBreach, UsageSample

MB = 2**20
BANDWIDTH = "bandwidth"
DISK = "disk"


def monthly_bandwidth_mb(today: date) -> dict:
    """Bandwidth used this month per site id, in MB: rollups before today + today's samples."""
    month_start = today.replace(day=1)
    totals: dict = dict(
        DailyUsage.objects.filter(date__gte=month_start, date__lt=today)
        .order_by()
        .values("site_id")
        .annotate(mb=Sum("total_bandwidth_mb"))
        .values_list("site_id", "mb")
    )
    day_start = datetime.combine(today, time.min, tzinfo=UTC)
    for site_id, used in (
        UsageSample.objects.filter(timestamp__gte=day_start)
        .order_by()
        .values("site_id")
        .annotate(used=Sum("bandwidth_bytes"))
        .values_list("site_id", "used")
    ):
        totals[site_id] = (totals.get(site_id) or 0) + (used or 0) / MB
    return totals


def _sites_with_disk():
    """Live sites with limits, each annotated with its last measured disk use in bytes."""
    container_disk = (
        Container.objects.filter(site=OuterRef("pk"), disk_bytes__isnull=False)
        .order_by("-disk_measured_at")
        .values("disk_bytes")[:1]
    )
    sample_disk = (
        UsageSample.objects.filter(site=OuterRef("pk"))
        .order_by("-timestamp")
        .values("disk_bytes")[:1]
    )
    return (
        Site.objects.alive()
        .filter(limits__isnull=False)
        .select_related("organization", "limits")
        .annotate(container_disk=Subquery(container_disk), sample_disk=Subquery(sample_disk))
    )


def enforce_limits(now: datetime | None = None) -> int:
    """Record and act on every new breach of this month; returns the number of new breaches."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    period = today.replace(day=1)
    bandwidth = monthly_bandwidth_mb(today)
    already = set(LimitBreach.objects.filter(period=period).values_list("site_id", "limit"))
    policies: dict = {}
    created = 0
    for site in _sites_with_disk():
        disk_bytes = site.container_disk if site.container_disk is not None else site.sample_disk
        disk_bytes = (disk_bytes or 0) + (site.volume_bytes or 0)
        measured = {
            BANDWIDTH: (bandwidth.get(site.pk) or 0.0, site.limits.bandwidth_mb),
            DISK: ((disk_bytes or 0) / MB, site.limits.disk_mb),
        }
        for limit, (used, allowed) in measured.items():
            if used <= allowed or (site.pk, limit) in already:
                continue
            org_id = site.organization_id
            if org_id not in policies:
                policies[org_id] = _policy(site)
            if monitoring_services.record_breach(
                site, limit, used, allowed, period, policies[org_id]
            ):
                created += 1
                already.add((site.pk, limit))
    return created


def _policy(site: Site) -> str:
    quota: OrganizationQuota = services.quota_for(site.organization)
    return quota.over_limit_policy
