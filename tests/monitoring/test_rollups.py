"""Daily rollups: values, day boundaries, idempotence, and one statement per run."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.models import DailyUsage, HealthCheck, TrafficSample, UsageSample
from monitoring.rollups import rollup_day
from tests.hosting.factories import make_site

DAY = date(2024, 3, 10)
MB = 1024 * 1024
VALUE_FIELDS = [
    "id",
    "organization_id",
    "site_id",
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
]


def at(day: date, *hms: int) -> datetime:
    """`at(DAY, 23, 59, 59, 999000)` — an aware UTC datetime on that day."""
    return datetime(day.year, day.month, day.day, *hms, tzinfo=UTC)


def sample(site, when: datetime, *, memory_mb: float = 100, cpu=10.0, bandwidth_mb=0.0):
    return UsageSample(
        organization_id=site.organization_id,
        site=site,
        docker_id="c0ffee",
        timestamp=when,
        cpu_percent=cpu,
        memory_bytes=int(memory_mb * MB),
        bandwidth_bytes=int(bandwidth_mb * MB),
    )


def check(site, when: datetime, *, ok: bool = True, ms: float | None = 100.0):
    return HealthCheck(
        organization_id=site.organization_id,
        site=site,
        timestamp=when,
        ok=ok,
        status_code=200 if ok else 500,
        response_time_ms=ms,
    )


def rows(day: date = DAY) -> list[dict]:
    return list(DailyUsage.objects.filter(date=day).order_by("site_id").values(*VALUE_FIELDS))


@pytest.fixture
def sites(cast):
    return make_site(cast.org, name="Alpha"), make_site(cast.other_org, name="Beta")


@pytest.fixture
def usage_interval(settings):
    settings.USAGE_INTERVAL = 30
    return settings


def test_values_are_aggregated_in_the_database(sites, usage_interval):
    alpha, beta = sites
    UsageSample.objects.bulk_create(
        [
            sample(alpha, at(DAY, 0, 0, 0), memory_mb=100, cpu=10.0, bandwidth_mb=1),
            sample(alpha, at(DAY, 12, 0, 0), memory_mb=300, cpu=None, bandwidth_mb=2),
            sample(alpha, at(DAY, 23, 59, 59, 999000), memory_mb=200, cpu=30.0, bandwidth_mb=0.5),
            # neighbours of the day, never counted
            sample(alpha, at(DAY, 0, 0, 0) - timedelta(microseconds=1), memory_mb=9000, cpu=99.0),
            sample(alpha, at(DAY + timedelta(days=1), 0, 0, 0), memory_mb=9000, cpu=99.0),
            sample(beta, at(DAY, 6, 30, 0), memory_mb=8192, cpu=None, bandwidth_mb=0),
        ]
    )
    HealthCheck.objects.bulk_create(
        [
            check(alpha, at(DAY, 1, 0, 0), ms=100.0),
            check(alpha, at(DAY, 2, 0, 0), ms=300.0),
            check(alpha, at(DAY, 3, 0, 0), ok=False, ms=3000.0),  # failures not averaged
            check(alpha, at(DAY, 0, 0, 0) - timedelta(seconds=1), ms=5000.0),  # other day
        ]
    )

    assert rollup_day(DAY) == 2

    got_alpha, got_beta = sorted(rows(), key=lambda r: r["site_id"] != alpha.pk)
    assert got_alpha["organization_id"] == alpha.organization_id
    assert got_alpha["samples"] == 3
    assert got_alpha["avg_memory_mb"] == pytest.approx(200.0)
    assert got_alpha["max_memory_mb"] == pytest.approx(300.0)
    assert got_alpha["avg_cpu_percent"] == pytest.approx(20.0)  # the NULL is ignored
    assert got_alpha["max_cpu_percent"] == pytest.approx(30.0)
    assert got_alpha["total_bandwidth_mb"] == pytest.approx(3.5)
    assert got_alpha["uptime_seconds"] == 90
    assert got_alpha["avg_response_time_ms"] == pytest.approx(200.0)
    assert got_alpha["total_requests"] is None

    assert got_beta["organization_id"] == beta.organization_id
    assert got_beta["samples"] == 1
    assert got_beta["avg_memory_mb"] == pytest.approx(8192.0)  # 8 GiB: no integer overflow
    assert got_beta["max_memory_mb"] == pytest.approx(8192.0)
    assert got_beta["avg_cpu_percent"] == 0  # only NULLs: nothing measured yet
    assert got_beta["max_cpu_percent"] == 0
    assert got_beta["avg_response_time_ms"] is None  # no health check that day
    assert got_beta["uptime_seconds"] == 30


def test_day_boundaries(sites, usage_interval):
    alpha, _ = sites
    next_day = DAY + timedelta(days=1)
    UsageSample.objects.bulk_create(
        [
            sample(alpha, at(DAY, 23, 59, 59, 999000), memory_mb=10),
            sample(alpha, at(next_day, 0, 0, 0), memory_mb=20),
            sample(alpha, at(next_day, 0, 0, 0, 1), memory_mb=30),
        ]
    )

    assert rollup_day(DAY) == 1
    assert rollup_day(next_day) == 1

    [day_row] = rows(DAY)
    [next_row] = rows(next_day)
    assert (day_row["samples"], day_row["max_memory_mb"]) == (1, pytest.approx(10.0))
    assert (next_row["samples"], next_row["avg_memory_mb"]) == (2, pytest.approx(25.0))


def test_uptime_is_capped_at_a_day(sites, settings):
    alpha, beta = sites
    settings.USAGE_INTERVAL = 50_000
    UsageSample.objects.bulk_create(
        [
            sample(alpha, at(DAY, 1, 0, 0)),
            sample(alpha, at(DAY, 2, 0, 0)),
            sample(beta, at(DAY, 1, 0, 0)),
        ]
    )

    rollup_day(DAY)

    uptime = dict(DailyUsage.objects.values_list("site_id", "uptime_seconds"))
    assert uptime == {alpha.pk: 86400, beta.pk: 50_000}


def test_rerun_gives_the_same_rows(sites, usage_interval):
    alpha, beta = sites
    UsageSample.objects.bulk_create(
        [sample(alpha, at(DAY, h, 0, 0), memory_mb=h + 1, cpu=h * 1.5) for h in range(24)]
        + [sample(beta, at(DAY, 5, 0, 0), bandwidth_mb=7)]
    )
    HealthCheck.objects.bulk_create([check(alpha, at(DAY, 4, 0, 0), ms=42.0)])

    assert rollup_day(DAY) == 2
    first = rows()
    first_computed = dict(DailyUsage.objects.values_list("site_id", "computed_at"))
    assert rollup_day(DAY) == 2
    second = rows()

    assert second == first  # same ids, same values
    assert DailyUsage.objects.count() == 2
    assert dict(DailyUsage.objects.values_list("site_id", "computed_at")) != first_computed


def test_todays_row_is_refreshed(sites, usage_interval):
    alpha, _ = sites
    UsageSample.objects.bulk_create([sample(alpha, at(DAY, 8, 0, 0), memory_mb=100)])
    rollup_day(DAY)
    [before] = rows()

    UsageSample.objects.bulk_create(
        [sample(alpha, at(DAY, 9, 0, 0), memory_mb=300, bandwidth_mb=4)]
    )
    HealthCheck.objects.bulk_create([check(alpha, at(DAY, 9, 0, 0), ms=80.0)])
    assert rollup_day(DAY) == 1

    [after] = rows()
    assert after["id"] == before["id"]
    assert before["samples"] == 1
    assert before["avg_response_time_ms"] is None
    assert after["samples"] == 2
    assert after["avg_memory_mb"] == pytest.approx(200.0)
    assert after["max_memory_mb"] == pytest.approx(300.0)
    assert after["total_bandwidth_mb"] == pytest.approx(4.0)
    assert after["uptime_seconds"] == 60
    assert after["avg_response_time_ms"] == pytest.approx(80.0)


def test_a_day_without_samples_writes_nothing(sites, usage_interval):
    alpha, _ = sites
    UsageSample.objects.bulk_create([sample(alpha, at(DAY, 8, 0, 0))])
    HealthCheck.objects.bulk_create([check(alpha, at(DAY + timedelta(days=1), 8, 0, 0))])

    assert rollup_day(DAY + timedelta(days=1)) == 0
    assert not DailyUsage.objects.exists()


def test_other_days_rows_are_left_alone(sites, usage_interval):
    alpha, _ = sites
    UsageSample.objects.bulk_create(
        [
            sample(alpha, at(DAY, 8, 0, 0), memory_mb=100),
            sample(alpha, at(DAY + timedelta(days=1), 8, 0, 0), memory_mb=500),
        ]
    )
    rollup_day(DAY)
    [before] = rows(DAY)

    rollup_day(DAY + timedelta(days=1))

    assert rows(DAY) == [before]
    assert DailyUsage.objects.count() == 2


def test_one_statement_per_run(sites, usage_interval):
    alpha, beta = sites
    UsageSample.objects.bulk_create(
        [sample(site, at(DAY, h, 0, 0)) for site in (alpha, beta) for h in range(10)]
    )
    HealthCheck.objects.bulk_create([check(alpha, at(DAY, 3, 0, 0))])

    with CaptureQueriesContext(connection) as queries:
        assert rollup_day(DAY) == 2

    # Besides the test transaction's savepoints, PostgreSQL gets a SET LOCAL (reads no data).
    statements = [
        q["sql"]
        for q in queries.captured_queries
        if "SAVEPOINT" not in q["sql"].upper() and not q["sql"].upper().startswith("SET LOCAL")
    ]
    assert len(statements) == 1, statements
    sql = " ".join(statements[0].split()).upper()
    assert sql.startswith("INSERT INTO")
    assert "SELECT" in sql
    assert "GROUP BY" in sql
    assert "ON CONFLICT" in sql


def traffic(site, when: datetime, *, requests: int, avg_ms: float):
    return TrafficSample(
        organization_id=site.organization_id,
        site=site,
        timestamp=when,
        requests=requests,
        status_2xx=requests,
        response_time_avg_ms=avg_ms,
    )


def test_requests_and_their_response_time_come_from_the_access_log(sites, usage_interval):
    alpha, beta = sites
    UsageSample.objects.bulk_create(
        [sample(alpha, at(DAY, 10)), sample(beta, at(DAY, 10)), sample(alpha, at(DAY, 11))]
    )
    TrafficSample.objects.bulk_create(
        [
            traffic(alpha, at(DAY, 10), requests=30, avg_ms=10.0),
            traffic(alpha, at(DAY, 23, 59, 59), requests=10, avg_ms=50.0),
            traffic(alpha, at(DAY + timedelta(days=1), 0, 0, 0), requests=999, avg_ms=999.0),
        ]
    )
    HealthCheck.objects.bulk_create([check(alpha, at(DAY, 10), ms=500.0), check(beta, at(DAY, 10))])

    rollup_day(DAY)

    by_site = {r["site_id"]: r for r in DailyUsage.objects.filter(date=DAY).values()}
    assert by_site[alpha.pk]["total_requests"] == 40
    assert by_site[alpha.pk]["avg_response_time_ms"] == pytest.approx(20.0)  # weighted
    # Not behind a proxy that logs: no request count, and the health checks' time.
    assert by_site[beta.pk]["total_requests"] is None
    assert by_site[beta.pk]["avg_response_time_ms"] == pytest.approx(100.0)
