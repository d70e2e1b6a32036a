"""Usage samples, daily rollups, health checks, and the claims that keep periodic work single."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from accounts.models import Organization
from hostpanel.tenancy import TenantQuerySet


class UsageSample(models.Model):
    """One reading of one site container (seed 002 `site_resource_usage`, every 30 s).

    Cumulative counters (CPU ns, network and block bytes) are kept so rates come from two
    consecutive samples; `cpu_percent` and `bandwidth_bytes` are those rates, already taken.
    """

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey("hosting.Site", on_delete=models.CASCADE, related_name="usage_samples")
    docker_id = models.CharField(max_length=64)
    timestamp = models.DateTimeField(default=timezone.now)
    cpu_percent = models.FloatField(null=True, help_text="100 = one full CPU; empty at first.")
    memory_bytes = models.PositiveBigIntegerField(help_text="Usage minus inactive file cache.")
    memory_limit_bytes = models.PositiveBigIntegerField(default=0)
    pids = models.PositiveIntegerField(default=0)
    cpu_usage_ns = models.PositiveBigIntegerField(default=0)
    net_rx_bytes = models.PositiveBigIntegerField(default=0)
    net_tx_bytes = models.PositiveBigIntegerField(default=0)
    block_read_bytes = models.PositiveBigIntegerField(default=0)
    block_write_bytes = models.PositiveBigIntegerField(default=0)
    bandwidth_bytes = models.PositiveBigIntegerField(
        default=0, help_text="Network bytes in and out since the previous sample."
    )
    disk_bytes = models.PositiveBigIntegerField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp"]
        indexes = [
            # Covering the hourly series (monitoring/usage.py): a site's 30 days are read
            # from the index alone, not from 86,400 heap rows spread over the table.
            models.Index(
                fields=["site", "timestamp"],
                name="usage_site_time_cover_idx",
                include=["cpu_percent", "memory_bytes", "bandwidth_bytes"],
            ),
            models.Index(fields=["timestamp"], name="usage_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.site_id} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


class TrafficSample(models.Model):
    """A site's requests in one collection tick, read from its proxy's access log (seed 002's
    total_requests, response_time_ms, bandwidth). One row per site per tick with traffic."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey("hosting.Site", on_delete=models.CASCADE, related_name="traffic")
    timestamp = models.DateTimeField(default=timezone.now, help_text="When the tick was read.")
    requests = models.PositiveIntegerField(default=0)
    status_1xx = models.PositiveIntegerField(default=0)
    status_2xx = models.PositiveIntegerField(default=0)
    status_3xx = models.PositiveIntegerField(default=0)
    status_4xx = models.PositiveIntegerField(default=0)
    status_5xx = models.PositiveIntegerField(default=0)
    status_429 = models.PositiveIntegerField(
        default=0, help_text="Of the 4xx: too many requests (the proxy's throttle, mostly)."
    )
    bytes_sent = models.PositiveBigIntegerField(default=0)
    response_time_avg_ms = models.FloatField(default=0)
    response_time_p95_ms = models.FloatField(default=0)
    last_request_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp"]
        indexes = [
            models.Index(fields=["site", "timestamp"], name="traffic_site_time_idx"),
            models.Index(fields=["timestamp"], name="traffic_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.site_id}: {self.requests} requests at {self.timestamp:%Y-%m-%d %H:%M:%S}"


class AccessLogCursor(models.Model):
    """How far a host's access log has been read: the file (inode) and the byte offset."""

    host = models.OneToOneField(
        "hosting.DockerHost", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    inode = models.PositiveBigIntegerField(default=0)
    offset = models.PositiveBigIntegerField(default=0)
    read_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.host_id} at {self.offset}"


class DailyUsage(models.Model):
    """A site's usage for one UTC day (seed 002 `site_usage_daily`), kept a year."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey("hosting.Site", on_delete=models.CASCADE, related_name="daily_usage")
    date = models.DateField()
    avg_memory_mb = models.FloatField(default=0)
    max_memory_mb = models.FloatField(default=0)
    avg_cpu_percent = models.FloatField(default=0)
    max_cpu_percent = models.FloatField(default=0)
    total_bandwidth_mb = models.FloatField(default=0)
    total_requests = models.PositiveBigIntegerField(null=True, blank=True)
    avg_response_time_ms = models.FloatField(null=True, blank=True)
    uptime_seconds = models.PositiveIntegerField(default=0)
    samples = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(default=timezone.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-date"]
        constraints = [
            models.UniqueConstraint(fields=["site", "date"], name="monitoring_daily_site_date")
        ]
        indexes = [models.Index(fields=["organization", "date"], name="daily_org_date_idx")]

    def __str__(self) -> str:
        return f"{self.site_id} on {self.date}"


class HourlyUsage(models.Model):
    """A site's usage for one UTC hour, rolled up from its samples (monitoring/hourly.py) so
    the usage API's hourly series reads 720 rows for 30 days, not 86,400 samples. Kept as
    long as the raw samples."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey("hosting.Site", on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField(help_text="Start of the UTC hour.")
    avg_cpu_percent = models.FloatField(null=True, help_text="Empty when no sample had a rate.")
    max_cpu_percent = models.FloatField(null=True)
    avg_memory_bytes = models.FloatField()
    max_memory_bytes = models.PositiveBigIntegerField()
    bandwidth_bytes = models.PositiveBigIntegerField()
    samples = models.PositiveIntegerField()
    computed_at = models.DateTimeField(default=timezone.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-hour"]
        constraints = [
            models.UniqueConstraint(fields=["site", "hour"], name="monitoring_hourly_site_hour")
        ]
        indexes = [models.Index(fields=["hour"], name="hourly_hour_idx")]  # retention

    def __str__(self) -> str:
        return f"{self.site_id} at {self.hour:%Y-%m-%d %H}:00"


class RollupMark(models.Model):
    """How far a rollup has gone: every hour before `through` is rolled up."""

    name = models.CharField(max_length=50, primary_key=True)
    through = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} through {self.through:%Y-%m-%d %H:%M}"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"


class HealthCheck(models.Model):
    """One HTTP GET of a site's health-check path."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey("hosting.Site", on_delete=models.CASCADE, related_name="health_checks")
    timestamp = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_time_ms = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp"]
        indexes = [
            # Covering: the daily rollup's response-time subquery reads only the index.
            models.Index(
                fields=["site", "timestamp"],
                name="health_site_time_idx",
                include=["ok", "response_time_ms"],
            ),
            models.Index(fields=["timestamp"], name="health_time_idx"),  # retention
        ]

    def __str__(self) -> str:
        return f"{self.site_id} {'ok' if self.ok else 'failed'} at {self.timestamp}"


class SiteHealth(models.Model):
    """The current health of a site, from consecutive checks."""

    site = models.OneToOneField(
        "hosting.Site", on_delete=models.CASCADE, primary_key=True, related_name="health"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(
        max_length=10, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN
    )
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_response_time_ms = models.FloatField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.site_id}: {self.status}"


class LimitBreach(models.Model):
    """A site passed its monthly bandwidth or disk limit (one row per site, limit, month)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey("hosting.Site", on_delete=models.CASCADE, related_name="breaches")
    limit = models.CharField(max_length=20)
    period = models.DateField(help_text="First day of the month the breach belongs to.")
    measured = models.FloatField()
    allowed = models.FloatField()
    action_taken = models.CharField(max_length=10)
    created_at = models.DateTimeField(default=timezone.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "limit", "period"], name="monitoring_breach_once_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.site_id} over {self.limit} in {self.period:%Y-%m}"
