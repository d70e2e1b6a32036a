"""Retention (seed 002): raw samples 30 days, daily rows a year, audit a year — configurable.

Old rows go in batches of BATCH_SIZE primary keys, one short transaction per batch, so no
transaction holds the database (SQLite's single writer lock above all) for long and the
collector's inserts slip in between batches.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from audit.models import AuditLog
from monitoring.models import DailyUsage, HealthCheck, UsageSample

log = logging.getLogger(__name__)

BATCH_SIZE = 5000


def delete_in_batches(model: type[models.Model], field: str, cutoff) -> int:
    """Delete rows whose `field` is before `cutoff`, BATCH_SIZE at a time. Returns the count.

    Each batch is one statement, ``DELETE … WHERE pk IN (SELECT pk … WHERE field < %s LIMIT
    n)``, in its own transaction. These tables have nothing pointing at them, so no cascade
    is needed (checked below, so a future reverse relation is not silently orphaned).
    """
    related = [
        rel
        for rel in model._meta.get_fields()
        if (rel.one_to_many or rel.one_to_one) and rel.auto_created and not rel.concrete
    ]
    if related:
        raise RuntimeError(f"{model.__name__} has dependent rows ({related}); delete with cascades")
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk = quote(model._meta.pk.column)
    model_field = model._meta.get_field(field)
    column = quote(model_field.column)
    value = model_field.get_db_prep_value(cutoff, connection)
    sql = (
        f"DELETE FROM {table} WHERE {pk} IN "  # noqa: S608 (identifiers from _meta)
        f"(SELECT {pk} FROM {table} WHERE {column} < %s LIMIT %s)"
    )
    deleted = 0
    while True:
        batch = BATCH_SIZE
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [value, batch])
            count = max(cursor.rowcount, 0)
        deleted += count
        if count < batch:
            return deleted


def apply_retention() -> dict:
    """Delete what is past its retention period. Returns rows deleted per table."""
    now = timezone.now()
    days = timedelta(days=1)
    deleted = {
        "usage_samples": delete_in_batches(
            UsageSample, "timestamp", now - settings.USAGE_RETENTION_DAYS * days
        ),
        "health_checks": delete_in_batches(
            HealthCheck, "timestamp", now - settings.HEALTH_RETENTION_DAYS * days
        ),
        "daily_usage": delete_in_batches(
            DailyUsage, "date", now.date() - settings.DAILY_USAGE_RETENTION_DAYS * days
        ),
        "audit_logs": AuditLog.objects.purge_before(
            now - settings.AUDIT_RETENTION_DAYS * days, batch_size=BATCH_SIZE
        ),
    }
    log.info("retention: %s", deleted)
    return deleted
