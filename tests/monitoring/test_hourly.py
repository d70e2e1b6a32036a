"""Hourly rollups: the rows, idempotence, the mark, and an hourly series that reads them and
is the same as aggregating the samples."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hostpanel.models import TaskClaim
from monitoring import hourly, usage
from monitoring.models import HourlyUsage, RollupMark, UsageSample
from monitoring.tasks import rollup_recent_hours
from tests.hosting.factories import make_site

T0 = datetime(2025, 3, 10, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
MB = 2**20
VALUES = [
    "id",
    "organization_id",
    "site_id",
    "hour",
    "avg_cpu_percent",
    "max_cpu_percent",
    "avg_memory_bytes",
    "max_memory_bytes",
    "bandwidth_bytes",
    "samples",
]


def sample(site, when, *, cpu=10.0, memory=100 * MB, bandwidth=0) -> UsageSample:
    return UsageSample(
        organization_id=site.organization_id,
        site=site,
        docker_id="c0ffee",
        timestamp=when,
        cpu_percent=cpu,
        memory_bytes=memory,
        bandwidth_bytes=bandwidth,
    )


@pytest.fixture
def sites(cast):
    return make_site(cast.org, name="Alpha"), make_site(cast.other_org, name="Beta")


def rows():
    return list(HourlyUsage.objects.order_by("site_id", "hour").values(*VALUES))


def test_one_row_per_site_with_the_hours_averages_maxes_and_sums(sites):
    alpha, beta = sites
    UsageSample.objects.bulk_create(
        [
            sample(alpha, T0 - timedelta(microseconds=1), cpu=99, memory=999),  # hour before
            sample(alpha, T0, cpu=None, memory=100, bandwidth=1),  # no CPU rate yet
            sample(alpha, T0 + timedelta(seconds=30), cpu=20, memory=200, bandwidth=2),
            sample(alpha, T0 + H - timedelta(microseconds=1), cpu=40, memory=300, bandwidth=4),
            sample(alpha, T0 + H, cpu=1, memory=1),  # next hour
            sample(beta, T0 + timedelta(minutes=5), cpu=None, memory=7, bandwidth=7),
        ]
    )

    assert hourly.rollup_hour(T0 + timedelta(minutes=17)) == 2  # any moment of the hour

    got = {row["site_id"]: row for row in rows()}
    assert {k: got[alpha.pk][k] for k in VALUES[1:]} == {
        "organization_id": alpha.organization_id,
        "site_id": alpha.pk,
        "hour": T0,
        "avg_cpu_percent": 30.0,
        "max_cpu_percent": 40.0,
        "avg_memory_bytes": 200.0,
        "max_memory_bytes": 300,
        "bandwidth_bytes": 7,
        "samples": 3,
    }
    assert got[beta.pk]["organization_id"] == beta.organization_id
    assert (got[beta.pk]["avg_cpu_percent"], got[beta.pk]["max_cpu_percent"]) == (None, None)
    assert (got[beta.pk]["samples"], got[beta.pk]["bandwidth_bytes"]) == (1, 7)
    assert hourly.rolled_through() == T0 + H


def test_an_hour_without_samples_writes_nothing_but_moves_the_mark(sites):
    assert hourly.rollup_hour(T0) == 0
    assert not HourlyUsage.objects.exists()
    assert hourly.rolled_through() == T0 + H


def test_rolling_again_rewrites_the_same_rows_and_counts_late_samples(sites):
    alpha, _ = sites
    UsageSample.objects.bulk_create([sample(alpha, T0, memory=100), sample(alpha, T0 + H / 2)])
    hourly.rollup_hour(T0)
    first = rows()

    hourly.rollup_hour(T0)
    assert rows() == first  # same ids, same values

    UsageSample.objects.create(**vars_of(sample(alpha, T0 + H / 4, memory=400 * MB)))
    hourly.rollup_hour(T0)
    (again,) = rows()
    assert again["id"] == first[0]["id"]
    assert (again["samples"], again["max_memory_bytes"]) == (3, 400 * MB)


def vars_of(obj: UsageSample) -> dict:
    return {
        f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if f.attname != "id"
    }


def test_the_mark_never_moves_back(sites):
    hourly.rollup_hour(T0 + 5 * H)
    hourly.rollup_hour(T0)
    assert hourly.rolled_through() == T0 + 6 * H


def test_every_sites_rows_of_an_hour_are_one_statement(sites):
    alpha, beta = sites
    UsageSample.objects.bulk_create([sample(alpha, T0), sample(beta, T0)])
    with CaptureQueriesContext(connection) as queries:
        hourly.rollup_hour(T0)
    rolled = [q["sql"] for q in queries if "ON CONFLICT" in q["sql"].upper()]
    assert len(rolled) == 1
    assert HourlyUsage.objects.count() == 2


# --- the periodic run ---------------------------------------------------------------------


def test_first_run_starts_at_the_oldest_sample_and_stops_before_the_open_hour(sites):
    alpha, _ = sites
    UsageSample.objects.bulk_create(
        [sample(alpha, T0 + timedelta(minutes=m)) for m in range(0, 5 * 60, 30)]
    )
    now = T0 + 4 * H + timedelta(minutes=30)

    assert hourly.rollup_recent(now=now) == 4

    assert list(HourlyUsage.objects.order_by("hour").values_list("hour", flat=True)) == [
        T0 + n * H for n in range(4)
    ]
    assert hourly.rolled_through() == T0 + 4 * H  # 14:00 is still open


def test_an_hour_waits_for_the_grace_after_its_end(sites):
    alpha, _ = sites
    UsageSample.objects.create(**vars_of(sample(alpha, T0)))

    hourly.rollup_recent(now=T0 + H + hourly.GRACE - timedelta(seconds=1))
    assert hourly.rolled_through() is None  # nothing complete yet: the next run starts over

    hourly.rollup_recent(now=T0 + H + hourly.GRACE)
    assert hourly.rolled_through() == T0 + H
    assert HourlyUsage.objects.get().samples == 1


def test_later_runs_roll_the_new_hours_and_the_last_two_again(sites):
    alpha, _ = sites
    UsageSample.objects.bulk_create([sample(alpha, T0 + n * H) for n in range(6)])
    hourly.rollup_recent(now=T0 + 3 * H + hourly.GRACE)
    assert hourly.rolled_through() == T0 + 3 * H
    # A sample of 12:xx written after 12:00 was rolled, within the re-roll window.
    UsageSample.objects.create(**vars_of(sample(alpha, T0 + 2 * H + timedelta(minutes=40))))

    with CaptureQueriesContext(connection) as queries:
        hourly.rollup_recent(now=T0 + 5 * H + hourly.GRACE)

    rolled = [q for q in queries if "ON CONFLICT" in q["sql"].upper()]
    assert len(rolled) == 4  # 11:00 and 12:00 again, 13:00 and 14:00 new
    assert hourly.rolled_through() == T0 + 5 * H
    assert HourlyUsage.objects.get(hour=T0 + 2 * H).samples == 2


def test_a_run_rolls_at_most_max_hours_of_new_ones(sites):
    alpha, _ = sites
    UsageSample.objects.create(**vars_of(sample(alpha, T0)))
    now = T0 + 10 * H

    hourly.rollup_recent(now=now, max_hours=3)
    assert hourly.rolled_through() == T0 + 3 * H
    hourly.rollup_recent(now=now, max_hours=3)
    assert hourly.rolled_through() == T0 + 6 * H
    hourly.rollup_recent(now=now, max_hours=30)
    assert hourly.rolled_through() == T0 + 9 * H


def test_a_mark_behind_retention_jumps_to_the_oldest_kept_hour(sites, settings):
    alpha, _ = sites
    settings.USAGE_RETENTION_DAYS = 2
    RollupMark.objects.create(name=hourly.MARK, through=T0 - 24 * 30 * H)
    UsageSample.objects.create(**vars_of(sample(alpha, T0 - 47 * H)))
    now = T0 + hourly.GRACE

    with CaptureQueriesContext(connection) as queries:
        hourly.rollup_recent(now=now, max_hours=3)

    assert len([q for q in queries if "ON CONFLICT" in q["sql"].upper()]) == 3
    assert hourly.rolled_through() == T0 - 45 * H
    assert HourlyUsage.objects.get().hour == T0 - 47 * H


def test_a_first_run_skips_samples_past_retention(sites, settings):
    alpha, _ = sites
    settings.USAGE_RETENTION_DAYS = 1
    UsageSample.objects.bulk_create([sample(alpha, T0 - 40 * H), sample(alpha, T0 - 2 * H)])

    hourly.rollup_recent(now=T0 + hourly.GRACE)

    assert list(HourlyUsage.objects.values_list("hour", flat=True)) == [T0 - 2 * H]
    assert hourly.rolled_through() == T0


def test_without_any_sample_the_mark_starts_at_the_open_hour(db):
    assert hourly.rollup_recent(now=T0 + timedelta(minutes=20)) == 0
    assert hourly.rolled_through() == T0


def test_the_task_runs_once_per_interval(sites):
    alpha, _ = sites
    UsageSample.objects.create(**vars_of(sample(alpha, datetime.now(tz=UTC) - 3 * H)))

    assert rollup_recent_hours() >= 1
    assert rollup_recent_hours() == 0  # a second beat moments later
    assert TaskClaim.objects.get(name="monitoring.rollup_recent_hours").runs == 1
    assert RollupMark.objects.get(name=hourly.MARK).through <= datetime.now(tz=UTC)


# --- the series reads them ------------------------------------------------------------------


@pytest.fixture
def week(sites):
    """Three days of samples every minute for two sites, with gaps, CPU readings missing now
    and then, and values that do not average to round numbers."""
    rng = random.Random(14)
    rows = []
    for site in sites:
        moment = T0 - 24 * H
        while moment < T0 + 48 * H:
            if not T0 + 3 * H <= moment < T0 + 5 * H:  # the container was down
                rows.append(
                    sample(
                        site,
                        moment,
                        cpu=None if rng.random() < 0.05 else rng.uniform(0, 180),
                        memory=rng.randrange(10 * MB, 900 * MB),
                        bandwidth=rng.randrange(0, 5 * MB),
                    )
                )
            moment += timedelta(seconds=60)
    UsageSample.objects.bulk_create(rows, batch_size=2000)
    return sites


RANGES = [
    (T0 - 24 * H, T0 + 48 * H),  # whole hours
    (T0 - 23 * H + timedelta(minutes=17), T0 + 40 * H + timedelta(seconds=31)),  # partial ends
    (T0 + timedelta(minutes=5), T0 + timedelta(minutes=50)),  # inside one hour
    (T0 + 2 * H + timedelta(minutes=59), T0 + 6 * H),  # across the gap
]


@pytest.mark.parametrize("start,end", RANGES)
@pytest.mark.parametrize(
    "mark", [T0 - 24 * H, T0 + 10 * H, T0 + 48 * H], ids=["none", "mid", "all"]
)
def test_series_is_the_same_read_from_rollups_as_from_samples(week, start, end, mark):
    alpha, _ = week
    from_samples = usage.series(alpha, start, end, usage.HOUR)
    assert from_samples  # the ranges have data

    hour = T0 - 24 * H
    while hour < mark:
        hourly.rollup_hour(hour)
        hour += H

    assert usage.series(alpha, start, end, usage.HOUR) == from_samples


def test_whole_hours_before_the_mark_come_from_the_rollups(sites):
    alpha, beta = sites
    UsageSample.objects.bulk_create(
        [sample(alpha, T0 + n * H, memory=n * MB) for n in range(4)]
        + [sample(beta, T0 + n * H, memory=99 * MB) for n in range(4)]
    )
    hourly.rollup_hour(T0)
    hourly.rollup_hour(T0 + H)
    # Rolled hours are read from HourlyUsage: their samples may be gone.
    UsageSample.objects.filter(timestamp__lt=T0 + 2 * H).delete()
    # The hour after the mark is read from the samples.
    UsageSample.objects.create(**vars_of(sample(alpha, T0 + 2 * H + H / 2, memory=4 * MB)))

    points = usage.series(alpha, T0, T0 + 4 * H, usage.HOUR)

    assert [(p["t"], p["memory_mb"], p["samples"]) for p in points] == [
        ("2025-03-10T10:00:00Z", 0.0, 1),
        ("2025-03-10T11:00:00Z", 1.0, 1),
        ("2025-03-10T12:00:00Z", 3.0, 2),
        ("2025-03-10T13:00:00Z", 3.0, 1),
    ]


def test_a_partial_first_hour_counts_only_its_samples_in_range(sites):
    alpha, _ = sites
    UsageSample.objects.bulk_create(
        [sample(alpha, T0 + timedelta(minutes=m), memory=m * MB) for m in (0, 10, 20, 30)]
    )
    hourly.rollup_hour(T0)  # the whole hour: 4 samples

    (point,) = usage.series(alpha, T0 + timedelta(minutes=15), T0 + 2 * H, usage.HOUR)

    assert (point["t"], point["samples"], point["memory_mb"]) == ("2025-03-10T10:00:00Z", 2, 25.0)


def test_series_over_30_rolled_days_is_three_queries(sites):
    alpha, _ = sites
    start = T0 - 30 * 24 * H
    HourlyUsage.objects.bulk_create(
        HourlyUsage(
            organization_id=alpha.organization_id,
            site=alpha,
            hour=start + n * H,
            avg_memory_bytes=MB,
            max_memory_bytes=MB,
            bandwidth_bytes=0,
            samples=120,
        )
        for n in range(30 * 24)
    )
    RollupMark.objects.create(name=hourly.MARK, through=T0)
    UsageSample.objects.create(**vars_of(sample(alpha, T0 + timedelta(minutes=1))))

    with CaptureQueriesContext(connection) as queries:
        points = usage.series(alpha, start, T0 + H, usage.HOUR)

    assert len(points) == 30 * 24 + 1
    assert points[-1]["t"] == "2025-03-10T10:00:00Z"
    assert len(queries) == 3  # the mark, the rolled hours, the samples after the mark
