"""Usage samples partitioned by month on PostgreSQL: rows land in their month, partitions are
made ahead (rows stranded in DEFAULT move in), retention drops whole past months. SQLite
keeps its plain table (these tests are PostgreSQL's)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection

from monitoring import partitions, retention
from monitoring.models import UsageSample
from tests.hosting.factories import make_site

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="partitioning is PostgreSQL's (SQLite: plain)"
    ),
]


def sample(site, when: datetime) -> UsageSample:
    return UsageSample.objects.create(
        organization=site.organization, site=site, docker_id="c1", timestamp=when, memory_bytes=1
    )


def home_of(row: UsageSample) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {partitions.TABLE} WHERE id = %s",  # noqa: S608
            [row.pk],
        )
        return cursor.fetchone()[0]


def test_the_table_is_partitioned_and_rows_land_in_their_month(cast):
    site = make_site(cast.org)
    with connection.cursor() as cursor:
        assert partitions.is_partitioned(cursor)
    partitions.ensure()
    now = datetime.now(tz=UTC)
    row = sample(site, now)
    assert home_of(row) == partitions.partition_name(now.date().replace(day=1))
    assert UsageSample.objects.get(pk=row.pk).memory_bytes == 1  # addressed by id alone
    ancient = sample(site, datetime(2001, 1, 1, tzinfo=UTC))
    assert home_of(ancient) == partitions.DEFAULT  # an insert never fails


def test_partitions_are_made_ahead_and_stranded_rows_move_in(cast):
    site = make_site(cast.org)
    stranded = sample(site, datetime(2031, 5, 10, tzinfo=UTC))
    assert home_of(stranded) == partitions.DEFAULT
    created = partitions.ensure(now=datetime(2031, 4, 2, tzinfo=UTC))
    assert created == [
        "monitoring_usagesample_y2031m04",
        "monitoring_usagesample_y2031m05",
        "monitoring_usagesample_y2031m06",
    ]
    assert home_of(stranded) == "monitoring_usagesample_y2031m05"
    assert partitions.ensure(now=datetime(2031, 4, 2, tzinfo=UTC)) == []  # once
    assert UsageSample.objects.filter(pk=stranded.pk).exists()


def test_retention_drops_past_months_whole_and_trims_the_one_across_the_cutoff(cast, settings):
    settings.USAGE_RETENTION_DAYS = 30
    site = make_site(cast.org)
    now = datetime.now(tz=UTC)
    this_month = now.date().replace(day=1)
    old_month = (this_month - timedelta(days=95)).replace(day=1)
    partitions.ensure(now=datetime(old_month.year, old_month.month, 1, tzinfo=UTC), ahead=4)
    gone = sample(site, datetime(old_month.year, old_month.month, 3, tzinfo=UTC))
    trimmed = sample(site, now - timedelta(days=31))
    kept = sample(site, now - timedelta(days=2))

    result = retention.apply_retention()

    with connection.cursor() as cursor:
        left = partitions.months(cursor)
    assert date(old_month.year, old_month.month, 1) not in left
    assert this_month in left
    assert result["usage_partitions_dropped"] >= 1
    assert not UsageSample.objects.filter(pk__in=[gone.pk, trimmed.pk]).exists()
    assert UsageSample.objects.filter(pk=kept.pk).exists()
