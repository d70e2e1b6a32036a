"""Hourly rollups of usage samples: what the usage API's hourly series reads.

A site sampled every 30 s has 86,400 samples in 30 days; aggregating them on every request
cost ~100 ms on PostgreSQL (bench/README.md). `rollup_hour(hour)` writes every site's
HourlyUsage row for one UTC hour with a single ``INSERT … SELECT … GROUP BY … ON CONFLICT
DO UPDATE`` (idempotent, like the daily rollup) and moves the "rolled through" mark in the
same transaction, so a reader that sees the mark sees the rows.

`rollup_recent()` runs every few minutes: it rolls the hours that ended at least GRACE ago
(a tick's samples are all written by then), and rolls the last REROLL again so a late
sample is counted. The API reads rolled rows for whole hours before the mark and raw
samples for the rest (the partial hours at either end of the range, and the hours after
the mark), so its answer is the same as aggregating the samples.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from monitoring.models import HourlyUsage, RollupMark, UsageSample
from monitoring.rollups import quoted_columns

log = logging.getLogger(__name__)

MARK = "usage_hourly"
HOUR = timedelta(hours=1)
# Samples carry the time of their reading and are written within seconds of it (a slow
# engine: DOCKER_TIMEOUT_SECONDS); an hour is rolled once this much has passed after it.
GRACE = timedelta(minutes=5)
# Hours before the mark rolled again on each run, for samples written later still.
REROLL = timedelta(hours=2)
# New hours per run: a first run over 30 days of samples catches up over several runs.
MAX_HOURS_PER_RUN = 48


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def rolled_through() -> datetime | None:
    """Every hour before this is in HourlyUsage (None: nothing rolled yet)."""
    return RollupMark.objects.filter(name=MARK).values_list("through", flat=True).first()


def _sql() -> str:
    quote = connection.ops.quote_name
    hourly, usage = quote(HourlyUsage._meta.db_table), quote(UsageSample._meta.db_table)
    h = quoted_columns(
        HourlyUsage,
        "organization",
        "site",
        "hour",
        "avg_cpu_percent",
        "max_cpu_percent",
        "avg_memory_bytes",
        "max_memory_bytes",
        "bandwidth_bytes",
        "samples",
        "computed_at",
    )
    u = quoted_columns(
        UsageSample,
        "organization",
        "site",
        "timestamp",
        "cpu_percent",
        "memory_bytes",
        "bandwidth_bytes",
    )
    updated = [name for name in h if name not in ("site", "hour")]
    return f"""
        INSERT INTO {hourly} ({", ".join(h.values())})
        SELECT
            u.{u["organization"]},
            u.{u["site"]},
            %s,
            AVG(u.{u["cpu_percent"]}),
            MAX(u.{u["cpu_percent"]}),
            AVG(CAST(u.{u["memory_bytes"]} AS DOUBLE PRECISION)),
            MAX(u.{u["memory_bytes"]}),
            SUM(u.{u["bandwidth_bytes"]}),
            COUNT(*),
            %s
        FROM {usage} u
        WHERE u.{u["timestamp"]} >= %s AND u.{u["timestamp"]} < %s
        GROUP BY u.{u["organization"]}, u.{u["site"]}
        ON CONFLICT ({h["site"]}, {h["hour"]}) DO UPDATE SET
            {", ".join(f"{h[name]} = excluded.{h[name]}" for name in updated)}
    """  # noqa: S608 (identifiers from _meta, values are parameters)


def rollup_hour(hour: datetime) -> int:
    """Write (or rewrite) every site's row for the UTC hour starting at `hour`, and move the
    mark past it if it was behind. Returns the rows written."""
    hour = floor_hour(hour)
    adapt = connection.ops.adapt_datetimefield_value
    params = [adapt(hour), adapt(timezone.now()), adapt(hour), adapt(hour + HOUR)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_sql(), params)
        written = max(cursor.rowcount, 0)
        mark, created = RollupMark.objects.select_for_update().get_or_create(
            name=MARK, defaults={"through": hour + HOUR}
        )
        if not created and mark.through < hour + HOUR:
            mark.through = hour + HOUR
            mark.save(update_fields=["through"])
    return written


def rollup_recent(now: datetime | None = None, max_hours: int = MAX_HOURS_PER_RUN) -> int:
    """Roll the complete hours not rolled yet (at most `max_hours` of them) and the last
    REROLL again. Returns the rows written."""
    now = now or timezone.now()
    target = floor_hour(now - GRACE)
    # Hours past retention have no samples left: a mark that fell behind them jumps ahead.
    kept = floor_hour(now - timedelta(days=settings.USAGE_RETENTION_DAYS))
    mark = rolled_through()
    if mark is None:
        oldest = UsageSample.objects.aggregate(oldest=Min("timestamp"))["oldest"]
        if oldest is None:
            RollupMark.objects.get_or_create(name=MARK, defaults={"through": target})
            return 0
        mark = first = max(floor_hour(oldest), kept)
    elif mark < kept:
        mark = first = kept
    else:
        first = mark - REROLL
    stop = min(target, mark + max_hours * HOUR)
    written, hour = 0, first
    while hour < stop:
        written += rollup_hour(hour)
        hour += HOUR
    if stop < target:
        log.info("hourly usage: rolled through %s, %s to go", stop, target - stop)
    return written
