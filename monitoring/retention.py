"""Retention (seed 002): raw samples 30 days (their hourly rollups too), daily rows a year,
audit a year — configurable.

On PostgreSQL raw samples are partitioned by month (monitoring/partitions.py): a month whose
rows are all past the cutoff is dropped whole.

Old rows go in batches of BATCH_SIZE primary keys, one short transaction per batch, so no
transaction holds the database (SQLite's single writer lock above all) for long and the
collector's inserts slip in between batches.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from audit.models import AuditLog
from hostpanel.batch import delete_in_batches
from monitoring import partitions
from monitoring.models import DailyUsage, HealthCheck, HourlyUsage, TrafficSample, UsageSample

log = logging.getLogger(__name__)

BATCH_SIZE = 5000


def apply_retention() -> dict:
    """Delete what is past its retention period. Returns rows deleted per table."""
    now = timezone.now()
    days = timedelta(days=1)
    # PostgreSQL: whole months past the cutoff go as partitions; the rest row by row.
    dropped = partitions.drop_before(now - settings.USAGE_RETENTION_DAYS * days)
    deleted = {
        "usage_partitions_dropped": len(dropped),
        "usage_samples": delete_in_batches(
            UsageSample, "timestamp", now - settings.USAGE_RETENTION_DAYS * days, BATCH_SIZE
        ),
        "hourly_usage": delete_in_batches(
            HourlyUsage, "hour", now - settings.USAGE_RETENTION_DAYS * days, BATCH_SIZE
        ),
        "traffic_samples": delete_in_batches(
            TrafficSample, "timestamp", now - settings.USAGE_RETENTION_DAYS * days, BATCH_SIZE
        ),
        "health_checks": delete_in_batches(
            HealthCheck, "timestamp", now - settings.HEALTH_RETENTION_DAYS * days, BATCH_SIZE
        ),
        "daily_usage": delete_in_batches(
            DailyUsage,
            "date",
            now.date() - settings.DAILY_USAGE_RETENTION_DAYS * days,
            BATCH_SIZE,
        ),
        "audit_logs": AuditLog.objects.purge_before(
            now - settings.AUDIT_RETENTION_DAYS * days, batch_size=BATCH_SIZE
        ),
    }
    log.info("retention: %s", deleted)
    return deleted
