"""Retention: only rows past their period go, in batches of short statements."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditLog
from monitoring import retention
from monitoring.models import DailyUsage, HealthCheck, HourlyUsage, TrafficSample, UsageSample
from tests.hosting.factories import make_site


@pytest.fixture
def periods(settings):
    settings.USAGE_RETENTION_DAYS = 30
    settings.HEALTH_RETENTION_DAYS = 14
    settings.DAILY_USAGE_RETENTION_DAYS = 365
    settings.AUDIT_RETENTION_DAYS = 365
    return settings


@pytest.fixture
def site(cast):
    return make_site(cast.org, name="Alpha")


def samples(site, when, n):
    return UsageSample.objects.bulk_create(
        UsageSample(
            organization_id=site.organization_id,
            site=site,
            docker_id="c0ffee",
            timestamp=when - timedelta(seconds=i),
            memory_bytes=1,
        )
        for i in range(n)
    )


def checks(site, when, n):
    return HealthCheck.objects.bulk_create(
        HealthCheck(
            organization_id=site.organization_id,
            site=site,
            timestamp=when - timedelta(seconds=i),
            ok=True,
        )
        for i in range(n)
    )


def traffic(site, when, n):
    return TrafficSample.objects.bulk_create(
        TrafficSample(
            organization_id=site.organization_id,
            site=site,
            timestamp=when - timedelta(seconds=i),
            requests=1,
        )
        for i in range(n)
    )


def daily(site, days_ago):
    today = timezone.now().date()
    return DailyUsage.objects.bulk_create(
        DailyUsage(organization_id=site.organization_id, site=site, date=today - timedelta(days=d))
        for d in days_ago
    )


def hours(site, when, n):
    return HourlyUsage.objects.bulk_create(
        HourlyUsage(
            organization_id=site.organization_id,
            site=site,
            hour=when.replace(minute=0, second=0, microsecond=0) - timedelta(hours=i),
            avg_memory_bytes=1,
            max_memory_bytes=1,
            bandwidth_bytes=0,
            samples=1,
        )
        for i in range(n)
    )


def audit_rows(when, n):
    return [AuditLog.objects.create(action="site.update", timestamp=when) for _ in range(n)]


def deletes_from(queries, model) -> int:
    table = re.escape(model._meta.db_table)
    pattern = re.compile(rf'^\s*DELETE FROM\s+"?{table}"?\s', re.I)
    return sum(1 for q in queries.captured_queries if pattern.match(q["sql"]))


def test_only_old_rows_are_deleted(periods, site):
    now = timezone.now()
    old_samples = samples(site, now - timedelta(days=30, minutes=1), 4)
    new_samples = samples(site, now - timedelta(days=29, hours=23), 3)
    old_checks = checks(site, now - timedelta(days=15), 2)
    new_checks = checks(site, now - timedelta(days=13), 2)
    traffic(site, now - timedelta(days=30, minutes=1), 3)  # requests: kept as long as samples
    new_traffic = traffic(site, now - timedelta(days=29, hours=23), 1)
    hours(site, now - timedelta(days=30, hours=1), 2)  # hourly rollups: as long as samples
    new_hours = hours(site, now - timedelta(days=29, hours=22), 1)
    daily(site, [366, 400])  # past a year
    kept_daily = daily(site, [365, 364, 0])
    old_audit = audit_rows(now - timedelta(days=366), 2)
    recent_audit = AuditLog.objects.filter(timestamp__gte=now - timedelta(days=1)).count()
    assert recent_audit > 0  # the site's creation, and the cast's

    result = retention.apply_retention()

    assert result == {
        "usage_partitions_dropped": 0,
        "usage_samples": 4,
        "hourly_usage": 2,
        "traffic_samples": 3,
        "health_checks": 2,
        "daily_usage": 2,
        "audit_logs": 2,
    }
    assert set(UsageSample.objects.values_list("pk", flat=True)) == {s.pk for s in new_samples}
    assert set(TrafficSample.objects.values_list("pk", flat=True)) == {t.pk for t in new_traffic}
    assert set(HourlyUsage.objects.values_list("pk", flat=True)) == {h.pk for h in new_hours}
    assert set(HealthCheck.objects.values_list("pk", flat=True)) == {c.pk for c in new_checks}
    assert set(DailyUsage.objects.values_list("pk", flat=True)) == {d.pk for d in kept_daily}
    assert not AuditLog.objects.filter(pk__in=[a.pk for a in old_audit]).exists()
    assert AuditLog.objects.count() == recent_audit
    assert not UsageSample.objects.filter(pk__in=[s.pk for s in old_samples]).exists()
    assert not HealthCheck.objects.filter(pk__in=[c.pk for c in old_checks]).exists()


def test_periods_come_from_settings(periods, site):
    now = timezone.now()
    samples(site, now - timedelta(days=3), 2)
    checks(site, now - timedelta(days=3), 1)
    periods.USAGE_RETENTION_DAYS = 7

    assert retention.apply_retention()["usage_samples"] == 0
    periods.USAGE_RETENTION_DAYS = 2
    periods.HEALTH_RETENTION_DAYS = 2
    result = retention.apply_retention()

    assert (result["usage_samples"], result["health_checks"]) == (2, 1)
    assert not UsageSample.objects.exists()


def test_deletes_in_batches(periods, site, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_SIZE", 3)
    now = timezone.now()
    samples(site, now - timedelta(days=40), 7)
    samples(site, now, 2)
    checks(site, now - timedelta(days=40), 6)
    daily(site, [400])
    audit_rows(now - timedelta(days=400), 5)

    with CaptureQueriesContext(connection) as queries:
        result = retention.apply_retention()

    assert result == {
        "usage_partitions_dropped": 0,
        "usage_samples": 7,
        "hourly_usage": 0,
        "traffic_samples": 0,
        "health_checks": 6,
        "daily_usage": 1,
        "audit_logs": 5,
    }
    assert deletes_from(queries, UsageSample) == 3  # 3 + 3 + 1
    assert deletes_from(queries, HealthCheck) == 3  # 3 + 3 + an empty one that ends the loop
    assert deletes_from(queries, DailyUsage) == 1
    assert deletes_from(queries, AuditLog) == 2  # the audit purge uses the same batch size
    assert UsageSample.objects.count() == 2


def test_nothing_to_delete(periods, site):
    samples(site, timezone.now(), 2)
    with CaptureQueriesContext(connection) as queries:
        result = retention.apply_retention()
    assert result == {
        "usage_partitions_dropped": 0,
        "usage_samples": 0,
        "hourly_usage": 0,
        "traffic_samples": 0,
        "health_checks": 0,
        "daily_usage": 0,
        "audit_logs": 0,
    }
    assert deletes_from(queries, UsageSample) == 1
    assert UsageSample.objects.count() == 2
