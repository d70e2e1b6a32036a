"""Limits acted on: monthly bandwidth (rollups + today's samples) and disk, a breach recorded
and audited once per site, limit and month, and the organization's policy applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditLog
from hosting import services
from hosting.models import Container, DockerHost, HostStatus, Site
from monitoring import limits
from monitoring.models import DailyUsage, LimitBreach, UsageSample
from tests.hosting.factories import ensure_host, make_site

pytestmark = pytest.mark.django_db

MB = 2**20
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def site_with(org, *, bandwidth_mb=100, disk_mb=50):
    return make_site(
        org,
        limits={
            "memory_mb": 64,
            "cpu_percent": 10,
            "bandwidth_mb": bandwidth_mb,
            "disk_mb": disk_mb,
        },
    )


def daily(site, day: int, mb: float, month: int = 3) -> DailyUsage:
    return DailyUsage.objects.create(
        organization_id=site.organization_id,
        site=site,
        date=datetime(2026, month, day, tzinfo=UTC).date(),
        total_bandwidth_mb=mb,
    )


def sample(site, when: datetime, *, bandwidth_mb: float = 0, disk_bytes=None) -> UsageSample:
    return UsageSample.objects.create(
        organization_id=site.organization_id,
        site=site,
        docker_id="c0ffee",
        timestamp=when,
        memory_bytes=MB,
        bandwidth_bytes=int(bandwidth_mb * MB),
        disk_bytes=disk_bytes,
    )


def audits(site):
    return AuditLog.objects.filter(action="site.limit_exceeded", target_id=str(site.pk))


def test_bandwidth_breach_with_notify_is_recorded_and_audited_once(cast):
    site = site_with(cast.org, bandwidth_mb=100)
    daily(site, 1, 40)
    daily(site, 14, 30)
    sample(site, NOW - timedelta(hours=2), bandwidth_mb=25)
    sample(site, NOW - timedelta(hours=1), bandwidth_mb=15)

    assert limits.enforce_limits(NOW) == 1

    breach = LimitBreach.objects.get()
    assert (breach.site_id, breach.limit, breach.action_taken) == (site.pk, "bandwidth", "notify")
    assert breach.period == NOW.date().replace(day=1)
    assert breach.measured == pytest.approx(110)
    assert breach.allowed == 100
    entry = audits(site).get()
    assert entry.organization_id == cast.org.pk
    assert entry.actor_label == "system"
    assert entry.changes["limit"] == "bandwidth"
    assert entry.changes["measured"] == pytest.approx(110)
    assert entry.changes["allowed"] == 100
    assert entry.changes["policy"] == "notify"
    site.refresh_from_db()
    assert site.desired_state == "stopped"  # untouched (it was made stopped)

    # the second run finds the breach already recorded this month
    assert limits.enforce_limits(NOW) == 0
    assert LimitBreach.objects.count() == 1
    assert audits(site).count() == 1


def test_under_the_limit_nothing_happens(cast):
    site = site_with(cast.org, bandwidth_mb=100, disk_mb=50)
    daily(site, 10, 60)
    sample(site, NOW - timedelta(minutes=5), bandwidth_mb=40, disk_bytes=50 * MB)  # exactly at

    assert limits.enforce_limits(NOW) == 0
    assert not LimitBreach.objects.exists()
    assert not audits(site).exists()


def test_only_this_month_counts(cast):
    site = site_with(cast.org, bandwidth_mb=100)
    daily(site, 28, 500, month=2)  # last month
    daily(site, 15, 500)  # today's rollup row is not added on top of today's samples
    sample(site, datetime(2026, 2, 28, 23, 59, tzinfo=UTC), bandwidth_mb=500)
    sample(site, datetime(2026, 3, 14, 23, 0, tzinfo=UTC), bandwidth_mb=500)  # in a rollup
    sample(site, NOW - timedelta(hours=1), bandwidth_mb=99)

    assert limits.monthly_bandwidth_mb(NOW.date())[site.pk] == pytest.approx(99)
    assert limits.enforce_limits(NOW) == 0


def test_a_breach_last_month_does_not_hide_this_month(cast):
    site = site_with(cast.org, bandwidth_mb=100)
    LimitBreach.objects.create(
        organization=cast.org,
        site=site,
        limit="bandwidth",
        period=datetime(2026, 2, 1, tzinfo=UTC).date(),
        measured=120,
        allowed=100,
        action_taken="notify",
    )
    sample(site, NOW - timedelta(hours=1), bandwidth_mb=101)

    assert limits.enforce_limits(NOW) == 1
    assert LimitBreach.objects.filter(period=datetime(2026, 3, 1).date()).count() == 1


def test_disk_breach_from_the_measured_container(cast):
    site = site_with(cast.org, disk_mb=50)
    host = ensure_host()
    Container.objects.create(
        host=host,
        site=site,
        docker_id="d1",
        name="d1",
        image="x",
        state="running",
        disk_bytes=80 * MB,
        disk_measured_at=NOW,
    )
    sample(site, NOW - timedelta(minutes=1), disk_bytes=10 * MB)  # older copy: container wins

    assert limits.enforce_limits(NOW) == 1

    breach = LimitBreach.objects.get()
    assert (breach.limit, breach.measured, breach.allowed) == ("disk", 80, 50)
    assert audits(site).get().changes["limit"] == "disk"


def test_disk_breach_from_the_latest_sample_when_no_container_is_measured(cast):
    site = site_with(cast.org, disk_mb=50)
    sample(site, NOW - timedelta(minutes=10), disk_bytes=10 * MB)
    sample(site, NOW - timedelta(minutes=1), disk_bytes=60 * MB)

    assert limits.enforce_limits(NOW) == 1
    assert LimitBreach.objects.get().measured == 60


def test_both_limits_are_two_breaches(cast):
    site = site_with(cast.org, bandwidth_mb=100, disk_mb=50)
    sample(site, NOW - timedelta(minutes=1), bandwidth_mb=200, disk_bytes=60 * MB)

    assert limits.enforce_limits(NOW) == 2
    assert set(LimitBreach.objects.values_list("limit", flat=True)) == {"bandwidth", "disk"}
    assert audits(site).count() == 2


def test_deleted_sites_are_ignored(cast):
    site = site_with(cast.org, bandwidth_mb=100)
    sample(site, NOW - timedelta(minutes=1), bandwidth_mb=200)
    Site.objects.filter(pk=site.pk).update(deleted_at=timezone.now())

    assert limits.enforce_limits(NOW) == 0


def test_each_site_counts_only_its_own_usage(cast):
    busy = site_with(cast.org, bandwidth_mb=100)
    quiet = site_with(cast.other_org, bandwidth_mb=100)
    sample(busy, NOW - timedelta(minutes=1), bandwidth_mb=150)
    sample(quiet, NOW - timedelta(minutes=1), bandwidth_mb=50)

    assert limits.enforce_limits(NOW) == 1
    assert LimitBreach.objects.get().site_id == busy.pk


def test_stop_policy_stops_a_running_site(cast, monkeypatch):
    services.update_quota(cast.org, actor=None, over_limit_policy="stop")
    site = site_with(cast.org, bandwidth_mb=100)
    Site.objects.filter(pk=site.pk).update(desired_state="running")
    stopped = []
    monkeypatch.setattr(services, "stop_site", lambda s, actor: stopped.append((s.pk, actor)))
    sample(site, NOW - timedelta(minutes=1), bandwidth_mb=150)

    assert limits.enforce_limits(NOW) == 1

    assert stopped == [(site.pk, None)]
    assert LimitBreach.objects.get().action_taken == "stop"
    assert audits(site).get().changes["action_taken"] == "stop"


def test_stop_policy_on_an_already_stopped_site_does_not_call_docker(cast, monkeypatch):
    services.update_quota(cast.org, actor=None, over_limit_policy="stop")
    site = site_with(cast.org, bandwidth_mb=100)  # made stopped
    monkeypatch.setattr(services, "stop_site", lambda s, actor: pytest.fail("stop called"))
    sample(site, NOW - timedelta(minutes=1), bandwidth_mb=150)

    assert limits.enforce_limits(NOW) == 1
    assert LimitBreach.objects.get().action_taken == "stop"


def test_stop_is_recorded_at_once_and_the_engine_left_to_the_reconciler(cast, sent_tasks):
    """The host's endpoint does not exist: enforcement neither waits for it nor fails."""
    services.update_quota(cast.org, actor=None, over_limit_policy="stop")
    failing = site_with(cast.org, bandwidth_mb=100)
    Site.objects.filter(pk=failing.pk).update(desired_state="running")
    Container.objects.create(
        host=failing.host, site=failing, docker_id="f" * 64, name="f", image="x", state="running"
    )
    other = site_with(cast.other_org, bandwidth_mb=100)
    sample(failing, NOW - timedelta(minutes=1), bandwidth_mb=150)
    sample(other, NOW - timedelta(minutes=1), bandwidth_mb=150)

    assert limits.enforce_limits(NOW) == 2

    assert LimitBreach.objects.get(site=failing).action_taken == "stop"
    assert LimitBreach.objects.get(site=other).action_taken == "notify"
    failing.refresh_from_db()
    assert failing.desired_state == "stopped"
    assert failing.reconcile_status == "pending"
    assert ("reconcile_site", str(failing.pk)) in sent_tasks
    assert DockerHost.objects.get(pk=failing.host_id).status == HostStatus.ONLINE


def test_queries_do_not_grow_with_sites_or_samples(cast):
    def run_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            limits.enforce_limits(NOW)
        return len(ctx.captured_queries)

    first = [site_with(cast.org) for _ in range(2)]
    for site in first:
        sample(site, NOW - timedelta(minutes=1), bandwidth_mb=1)
    few = run_queries()
    for _ in range(5):
        site = site_with(cast.other_org)
        for minute in range(1, 20):
            sample(site, NOW - timedelta(minutes=minute), bandwidth_mb=1)

    assert run_queries() == few
