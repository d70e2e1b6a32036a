"""The queries behind the usage API: one site's series, and an organization's daily rows.

Each series is a fixed number of queries whatever its length: raw points straight from
UsageSample, hourly points from the HourlyUsage rollups (monitoring/hourly.py) with the
hours they do not hold yet aggregated by the database (GROUP BY the truncated hour), daily
points from the DailyUsage rollups. Memory and bandwidth are reported in MB of 2**20 bytes,
like the limits.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, F, Max, Q, Sum
from django.db.models.functions import TruncHour

from accounts.models import Organization
from hosting.models import Site
from monitoring import hourly
from monitoring.models import DailyUsage, HourlyUsage, TrafficSample, UsageSample

MB = float(2**20)
RAW, HOUR, DAY = "raw", "hour", "day"
RESOLUTIONS = (RAW, HOUR, DAY)
DEFAULT_RESOLUTION = HOUR
# How far back `from` defaults to, and the longest range each resolution serves.
DEFAULT_SPAN = {RAW: timedelta(hours=24), HOUR: timedelta(hours=24), DAY: timedelta(days=30)}
MAX_SPAN = {RAW: timedelta(days=2), HOUR: timedelta(days=31), DAY: timedelta(days=366)}

CSV_MAX_DAYS = 366
CSV_DEFAULT_DAYS = 30
CSV_COLUMNS = (
    "date",
    "site",
    "avg_memory_mb",
    "max_memory_mb",
    "avg_cpu_percent",
    "max_cpu_percent",
    "total_bandwidth_mb",
    "uptime_seconds",
    "avg_response_time_ms",
    "total_requests",
)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a Z, as DRF renders datetimes."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _mb(value: float | int | None) -> float | None:
    return None if value is None else _round(value / MB)


def series(site: Site, start: datetime, end: datetime, resolution: str) -> list[dict[str, Any]]:
    """Points of [start, end) at the resolution, oldest first."""
    if resolution == RAW:
        return _raw(site, start, end)
    if resolution == HOUR:
        return _hourly(site, start, end)
    if resolution == DAY:
        return _daily(site, start, end)
    raise ValueError(f"unknown resolution {resolution!r}")


def _raw(site: Site, start: datetime, end: datetime) -> list[dict[str, Any]]:
    rows = (
        UsageSample.objects.filter(site=site, timestamp__gte=start, timestamp__lt=end)
        .order_by("timestamp")
        .values_list("timestamp", "cpu_percent", "memory_bytes", "bandwidth_bytes")
    )
    return [
        {
            "t": iso(moment),
            "cpu_percent": _round(cpu),
            "cpu_percent_max": _round(cpu),
            "memory_mb": _mb(memory),
            "memory_mb_max": _mb(memory),
            "bandwidth_mb": _mb(bandwidth),
            "samples": 1,
        }
        for moment, cpu, memory, bandwidth in rows
    ]


def _hourly(site: Site, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Whole hours already rolled up come from HourlyUsage; the partial hours at either end
    and the hours after the rollup's mark are aggregated from the samples."""
    whole_from = hourly.ceil_hour(start)
    whole_to = min(hourly.floor_hour(end), hourly.rolled_through() or whole_from)
    if whole_to <= whole_from:
        return _hourly_from_samples(site, Q(timestamp__gte=start, timestamp__lt=end))
    rolled = (
        HourlyUsage.objects.filter(site=site, hour__gte=whole_from, hour__lt=whole_to)
        .order_by("hour")
        .values_list(
            "hour",
            "avg_cpu_percent",
            "max_cpu_percent",
            "avg_memory_bytes",
            "max_memory_bytes",
            "bandwidth_bytes",
            "samples",
        )
    )
    points = [
        _hour_point(hour, cpu, cpu_max, memory, memory_max, bandwidth, samples)
        for hour, cpu, cpu_max, memory, memory_max, bandwidth, samples in rolled
    ]
    edges = Q(timestamp__gte=start, timestamp__lt=whole_from) | Q(
        timestamp__gte=whole_to, timestamp__lt=end
    )
    points += _hourly_from_samples(site, edges)
    return sorted(points, key=lambda point: point["t"])


def _hourly_from_samples(site: Site, when: Q) -> list[dict[str, Any]]:
    rows = (
        UsageSample.objects.filter(when, site=site)
        .annotate(hour=TruncHour("timestamp", tzinfo=UTC))
        .values("hour")
        .annotate(
            cpu=Avg("cpu_percent"),
            cpu_max=Max("cpu_percent"),
            memory=Avg("memory_bytes"),
            memory_max=Max("memory_bytes"),
            bandwidth=Sum("bandwidth_bytes"),
            samples=Count("*"),  # not "id": the covering index holds no id
        )
        .order_by("hour")
    )
    return [
        _hour_point(
            row["hour"],
            row["cpu"],
            row["cpu_max"],
            row["memory"],
            row["memory_max"],
            row["bandwidth"],
            row["samples"],
        )
        for row in rows
    ]


def _hour_point(hour, cpu, cpu_max, memory, memory_max, bandwidth, samples) -> dict[str, Any]:
    return {
        "t": iso(hour),
        "cpu_percent": _round(cpu),
        "cpu_percent_max": _round(cpu_max),
        "memory_mb": _mb(memory),
        "memory_mb_max": _mb(memory_max),
        "bandwidth_mb": _mb(bandwidth or 0),
        "samples": samples,
    }


def day_span(start: datetime, end: datetime) -> tuple[date, date]:
    """The UTC days that overlap [start, end), as an inclusive (first, last) pair."""
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return first, last


def _daily(site: Site, start: datetime, end: datetime) -> list[dict[str, Any]]:
    rows = (
        DailyUsage.objects.filter(site=site, date__range=day_span(start, end))
        .order_by("date")
        .values_list(
            "date",
            "avg_cpu_percent",
            "max_cpu_percent",
            "avg_memory_mb",
            "max_memory_mb",
            "total_bandwidth_mb",
            "samples",
        )
    )
    return [
        {
            "t": iso(datetime(day.year, day.month, day.day, tzinfo=UTC)),
            "cpu_percent": _round(cpu),
            "cpu_percent_max": _round(cpu_max),
            "memory_mb": _round(memory),
            "memory_mb_max": _round(memory_max),
            "bandwidth_mb": _round(bandwidth),
            "samples": samples,
        }
        for day, cpu, cpu_max, memory, memory_max, bandwidth, samples in rows
    ]


# --- requests, from the proxy's access log ---------------------------------------------------


def requests_series(
    site: Site, start: datetime, end: datetime, resolution: str
) -> list[dict[str, Any]]:
    """The site's requests over [start, end) at the resolution (one query): per collection
    tick (raw), per hour, or per day (the rollups). Empty when its proxy logs no requests."""
    if resolution == DAY:
        rows = (
            DailyUsage.objects.filter(
                site=site, date__range=day_span(start, end), total_requests__isnull=False
            )
            .order_by("date")
            .values_list("date", "total_requests", "avg_response_time_ms")
        )
        return [
            _request_point(datetime(day.year, day.month, day.day, tzinfo=UTC), requests, ms)
            for day, requests, ms in rows
        ]
    ticks = TrafficSample.objects.filter(site=site, timestamp__gte=start, timestamp__lt=end)
    if resolution == RAW:
        return [
            _request_point(
                row.timestamp,
                row.requests,
                row.response_time_avg_ms,
                p95=row.response_time_p95_ms,
                statuses=(row.status_2xx, row.status_3xx, row.status_4xx, row.status_5xx),
                sent=row.bytes_sent,
            )
            for row in ticks.order_by("timestamp")
        ]
    if resolution != HOUR:
        raise ValueError(f"unknown resolution {resolution!r}")
    hours = (
        ticks.annotate(hour=TruncHour("timestamp", tzinfo=UTC))
        .values("hour")
        .annotate(
            total=Sum("requests"),
            weighted=Sum(F("response_time_avg_ms") * F("requests")),
            p95=Max("response_time_p95_ms"),
            s2=Sum("status_2xx"),
            s3=Sum("status_3xx"),
            s4=Sum("status_4xx"),
            s5=Sum("status_5xx"),
            sent=Sum("bytes_sent"),
        )
        .order_by("hour")
    )
    return [
        _request_point(
            row["hour"],
            row["total"],
            row["weighted"] / row["total"] if row["total"] else None,
            p95=row["p95"],
            statuses=(row["s2"], row["s3"], row["s4"], row["s5"]),
            sent=row["sent"],
        )
        for row in hours
    ]


def _request_point(moment, requests, ms, *, p95=None, statuses=None, sent=None) -> dict:
    s2, s3, s4, s5 = statuses or (None, None, None, None)
    return {
        "t": iso(moment),
        "requests": requests,
        "status_2xx": s2,
        "status_3xx": s3,
        "status_4xx": s4,
        "status_5xx": s5,
        "sent_mb": None if sent is None else _mb(sent),
        "response_time_ms": _round(ms),
        "response_time_p95_ms": _round(p95),
    }


# --- the organization's daily CSV ----------------------------------------------------------


def daily_rows(org: Organization, first: date, last: date):
    """DailyUsage of every site of the organization, deleted sites included (their history
    stays, seed 001), by date then site. A values_list queryset: iterate it in chunks."""
    return (
        DailyUsage.objects.filter(organization=org, date__range=(first, last))
        .order_by("date", "site__slug", "site_id")
        .values_list(
            "date",
            "site__slug",
            "avg_memory_mb",
            "max_memory_mb",
            "avg_cpu_percent",
            "max_cpu_percent",
            "total_bandwidth_mb",
            "uptime_seconds",
            "avg_response_time_ms",
            "total_requests",
        )
    )


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return _round(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def daily_csv(org: Organization, first: date, last: date) -> Iterator[str]:
    """The CSV text in pieces: the header, then one piece per chunk of rows (streamable)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    pending = 0
    for row in daily_rows(org, first, last).iterator(chunk_size=2000):
        writer.writerow([_cell(v) for v in row])
        pending += 1
        if pending == 500:
            pending = 0
            yield flush()
    if pending:
        yield flush()
