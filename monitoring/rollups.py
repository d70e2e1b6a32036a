"""Daily rollups (seed 002 `site_usage_daily`): one aggregate statement per day, in the database.

`rollup_day(day)` runs a single ``INSERT … SELECT … GROUP BY … ON CONFLICT (site, date) DO
UPDATE`` over that UTC day's usage samples, so a site's row is written whole or not at all
and re-running gives the same row (same id, same values; only `computed_at` moves). The
statement is plain SQL understood by both SQLite (≥ 3.24) and PostgreSQL (≥ 9.5).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from monitoring.models import DailyUsage, HealthCheck, TrafficSample, UsageSample

MB = 1048576.0
DAY_SECONDS = 86400


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as aware datetimes."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def quoted_columns(model, *names: str) -> dict[str, str]:
    """Quoted column names of the model's fields (FKs as their `_id` columns)."""
    quote = connection.ops.quote_name
    return {name: quote(model._meta.get_field(name).column) for name in names}


def rollup_sql() -> str:
    """The statement, with placeholders for: date, day bounds (requests), day bounds
    (response time from requests), day bounds (health checks), True (ok), interval x2,
    computed_at, day bounds (samples)."""
    quote = connection.ops.quote_name
    daily = quote(DailyUsage._meta.db_table)
    usage = quote(UsageSample._meta.db_table)
    checks = quote(HealthCheck._meta.db_table)
    d = quoted_columns(
        DailyUsage,
        "organization",
        "site",
        "date",
        "avg_memory_mb",
        "max_memory_mb",
        "avg_cpu_percent",
        "max_cpu_percent",
        "total_bandwidth_mb",
        "total_requests",
        "avg_response_time_ms",
        "uptime_seconds",
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
    h = quoted_columns(HealthCheck, "site", "timestamp", "ok", "response_time_ms")
    traffic = quote(TrafficSample._meta.db_table)
    t = quoted_columns(TrafficSample, "site", "timestamp", "requests", "response_time_avg_ms")
    updated = [name for name in d if name not in ("site", "date")]
    # Floats are aggregated as floats (PostgreSQL would otherwise sum bigints as numeric).
    return f"""
        INSERT INTO {daily} ({", ".join(d.values())})
        SELECT
            u.{u["organization"]},
            u.{u["site"]},
            %s,
            AVG(CAST(u.{u["memory_bytes"]} AS DOUBLE PRECISION)) / {MB},
            MAX(u.{u["memory_bytes"]}) / {MB},
            COALESCE(AVG(u.{u["cpu_percent"]}), 0),
            COALESCE(MAX(u.{u["cpu_percent"]}), 0),
            SUM(CAST(u.{u["bandwidth_bytes"]} AS DOUBLE PRECISION)) / {MB},
            (
                SELECT SUM(t.{t["requests"]})
                FROM {traffic} t
                WHERE t.{t["site"]} = u.{u["site"]}
                  AND t.{t["timestamp"]} >= %s AND t.{t["timestamp"]} < %s
            ),
            COALESCE(
                (
                    SELECT SUM(t.{t["response_time_avg_ms"]} * t.{t["requests"]})
                        / NULLIF(SUM(t.{t["requests"]}), 0)
                    FROM {traffic} t
                    WHERE t.{t["site"]} = u.{u["site"]}
                      AND t.{t["timestamp"]} >= %s AND t.{t["timestamp"]} < %s
                ),
                (
                    SELECT AVG(h.{h["response_time_ms"]})
                    FROM {checks} h
                    WHERE h.{h["site"]} = u.{u["site"]}
                      AND h.{h["timestamp"]} >= %s AND h.{h["timestamp"]} < %s
                      AND h.{h["ok"]} = %s
                )
            ),
            CASE WHEN COUNT(*) * %s > {DAY_SECONDS} THEN {DAY_SECONDS} ELSE COUNT(*) * %s END,
            COUNT(*),
            %s
        FROM {usage} u
        WHERE u.{u["timestamp"]} >= %s AND u.{u["timestamp"]} < %s
        GROUP BY u.{u["organization"]}, u.{u["site"]}
        ON CONFLICT ({d["site"]}, {d["date"]}) DO UPDATE SET
            {", ".join(f"{d[name]} = excluded.{d[name]}" for name in updated)}
    """  # noqa: S608 (identifiers from _meta, values are parameters)


def rollup_params(day: date, computed_at: datetime | None = None) -> list:
    ops = connection.ops
    start, end = (ops.adapt_datetimefield_value(bound) for bound in day_bounds(day))
    interval = int(settings.USAGE_INTERVAL)
    return [
        ops.adapt_datefield_value(day),
        start,
        end,
        start,
        end,
        start,
        end,
        True,
        interval,
        interval,
        ops.adapt_datetimefield_value(computed_at or timezone.now()),
        start,
        end,
    ]


def rollup_day(day: date) -> int:
    """Write (or rewrite) every site's DailyUsage row for `day` (UTC). Returns rows written.

    Uptime is samples x USAGE_INTERVAL capped at a day: a running container is sampled once
    per interval. Requests and their average response time come from the proxy's access
    log (TrafficSample); without any, `total_requests` stays empty and the response time is
    the health checks'. A day without samples writes nothing.
    """
    sql, params = rollup_sql(), rollup_params(day)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The planner prices the per-site health subquery high enough to trigger JIT
            # with inlining and optimisation: ~400 ms of compiling for ~50 ms of work (see
            # bench/README.md). A setting for this transaction only, not a second query.
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)
