"""Requests per site from a proxy's access log: incremental, complete lines only, rolled
files finished, unknown names ignored. Lines in Caddy 2.6's JSON access-log shape (the
integration test reads one the real Caddy wrote)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from hosting.models import DockerHost, Domain
from monitoring import traffic
from monitoring.models import AccessLogCursor, TrafficSample
from tests.hosting.factories import ensure_host, make_domain, make_site

pytestmark = pytest.mark.django_db
T0 = 1796290000.0


def line(host: str, status: int = 200, size: int = 100, duration: float = 0.01, ts=T0) -> str:
    return (
        json.dumps(
            {
                "level": "info",
                "ts": ts,
                "logger": "http.log.access.hostpanel_access",
                "msg": "handled request",
                "request": {"remote_ip": "127.0.0.1", "method": "GET", "host": host, "uri": "/"},
                "duration": duration,
                "size": size,
                "status": status,
            }
        )
        + "\n"
    )


@pytest.fixture
def logged(tmp_path):
    host = ensure_host()
    path = tmp_path / "access.log"
    DockerHost.objects.filter(pk=host.pk).update(proxy_access_log=str(path))
    host.refresh_from_db()
    return host, path


def samples(site):
    return list(TrafficSample.objects.filter(site=site).order_by("timestamp"))


def test_a_tick_counts_each_sites_requests_by_status_size_and_time(cast, logged):
    host, path = logged
    shop = make_site(cast.org, name="Shop")
    blog = make_site(cast.org, name="Blog")
    domain = make_domain(shop, "www.shop.example")
    Domain.objects.filter(pk=domain.pk).update(verified_at=datetime.now(UTC))
    durations = [0.001 * n for n in range(1, 21)]
    path.write_text(
        "".join(
            line("shop-acme.sites.localhost:8080", duration=d, ts=T0 + i)
            for i, d in enumerate(durations)
        )
        + line("WWW.shop.example", status=404, size=7)
        + line("blog-acme.sites.localhost", status=503, size=50)
        + line("nobody.sites.localhost")  # the proxy's own 404: no site's
        + "not json at all\n"
        + '{"msg": "another logger"}\n'
    )

    assert traffic.collect_host(host) == 22

    [s] = samples(shop)
    assert (s.requests, s.status_2xx, s.status_4xx, s.bytes_sent) == (21, 20, 1, 2007)
    assert s.response_time_avg_ms == pytest.approx((sum(durations) + 0.01) / 21 * 1000)
    assert s.response_time_p95_ms == pytest.approx(19.0)  # nearest rank: the 20th of 21
    assert s.last_request_at == datetime.fromtimestamp(T0 + 19, UTC)
    [b] = samples(blog)
    assert (b.requests, b.status_5xx) == (1, 1)


def test_ticks_read_only_what_is_new_and_only_complete_lines(cast, logged):
    host, path = logged
    shop = make_site(cast.org, name="Shop")
    name = "shop-acme.sites.localhost"
    path.write_text(line(name) * 3 + line(name)[:40])  # the last line is being written

    assert traffic.collect_host(host) == 3
    assert traffic.collect_host(host) == 0  # nothing new: no row
    with open(path, "a") as log:
        log.write(line(name)[40:] + line(name))
    assert traffic.collect_host(host) == 2
    assert [s.requests for s in samples(shop)] == [3, 2]
    assert AccessLogCursor.objects.get(host=host).offset == path.stat().st_size


def test_the_rest_of_a_rolled_file_is_read_before_the_new_one(cast, logged):
    host, path = logged
    shop = make_site(cast.org, name="Shop")
    name = "shop-acme.sites.localhost"
    path.write_text(line(name) * 2)
    assert traffic.collect_host(host) == 2
    with open(path, "a") as log:
        log.write(line(name) * 4)  # written after the tick, before the roll
    os.rename(path, path.with_name("access-2026-12-03T10-00-00.000.log"))  # Caddy's rolling
    path.write_text(line(name) * 5)

    assert traffic.collect_host(host) == 9
    assert sum(s.requests for s in samples(shop)) == 11


def test_a_host_without_a_log_or_a_missing_file_counts_nothing(cast, logged):
    host, _path = logged
    assert traffic.collect_host(host) == 0  # the file does not exist yet
    DockerHost.objects.filter(pk=host.pk).update(proxy_access_log="")
    host.refresh_from_db()
    assert traffic.collect_host(host) == 0
    assert traffic.collect_all() == {}


# --- requests per minute, at the edge -----------------------------------------------------


def test_a_site_over_its_requests_per_minute_is_throttled_for_a_minute(cast, logged):
    from datetime import timedelta

    from audit.models import AuditLog
    from hosting import proxy, services
    from hosting.models import Site

    host, path = logged
    shop = make_site(cast.org, name="Shop")
    services.update_limits(shop, actor=None, requests_per_minute=5)
    name = "shop-acme.sites.localhost"
    path.write_text(line(name) * 5)
    traffic.collect_host(host)
    assert Site.objects.get(pk=shop.pk).throttled_until is None  # at the limit, not over

    with open(path, "a") as log:
        log.write(line(name) * 2)
    now = datetime.now(UTC)
    traffic.collect_host(host, now=now)

    shop.refresh_from_db()
    assert shop.throttled_until == now + timedelta(seconds=60)
    [entry] = AuditLog.objects.filter(action="site.throttle", target_id=str(shop.pk))
    assert entry.changes["measured"] == 7 and entry.changes["allowed"] == 5
    DockerHost.objects.filter(pk=host.pk).update(proxy_admin="unix:///nonexistent/admin.sock")
    host.refresh_from_db()
    route = next(
        r
        for r in proxy.render(host)["apps"]["http"]["servers"][proxy.SERVER]["routes"]
        if r.get("@id") == f"site-{shop.pk}"
    )
    page = route["handle"][0]
    assert page["status_code"] == 429 and page["headers"]["Retry-After"]

    # The proxy's own 429s do not keep it throttled; once the minute is over it is lifted.
    with open(path, "a") as log:
        log.write(line(name, status=429) * 50)
    traffic.collect_host(host, now=now + timedelta(seconds=61))
    shop.refresh_from_db()
    assert shop.throttled_until is None
    assert AuditLog.objects.filter(action="site.throttle").count() == 1


# --- sleep when idle ----------------------------------------------------------------------


def awake_running(site, minutes_since_start: int):
    from datetime import timedelta

    from hosting.models import Site

    Site.objects.filter(pk=site.pk).update(
        desired_state="running",
        observed_state="running",
        sleep_after_minutes=5,
        reconciled_at=datetime.now(UTC) - timedelta(minutes=minutes_since_start),
    )


def test_only_sites_idle_for_their_sleep_time_sleep_and_bots_do_not_count(cast, logged):
    from audit.models import AuditLog
    from hosting.models import Site

    host, path = logged
    idle = make_site(cast.org, name="Idle")
    visited = make_site(cast.org, name="Visited")
    botted = make_site(cast.org, name="Botted")
    fresh = make_site(cast.org, name="Fresh")
    never = make_site(cast.org, name="Never")
    for site in (idle, visited, botted):
        awake_running(site, 10)
    awake_running(fresh, 2)
    awake_running(never, 10)
    Site.objects.filter(pk=never.pk).update(sleep_after_minutes=None)
    now = datetime.now(UTC).timestamp()
    bot = json.loads(line("botted-acme.sites.localhost", ts=now))
    bot["request"]["headers"] = {"User-Agent": ["Mozilla/5.0 (compatible; UptimeRobot/2.0)"]}
    path.write_text(line("visited-acme.sites.localhost", ts=now - 60) + json.dumps(bot) + "\n")

    traffic.collect_host(host)  # reads the log, then puts the idle ones to sleep

    asleep = set(Site.objects.filter(asleep_since__isnull=False).values_list("slug", flat=True))
    assert asleep == {"idle", "botted"}
    assert AuditLog.objects.filter(action="site.sleep").count() == 2


def test_the_wake_endpoint_wakes_only_live_sites_and_says_when_it_is_still_waking(cast, api):
    import uuid

    from audit.models import AuditLog
    from hosting.models import Site

    site = make_site(cast.org, name="Idle")
    Site.objects.filter(pk=site.pk).update(
        desired_state="running", sleep_after_minutes=5, asleep_since=datetime.now(UTC)
    )
    response = api.get(f"/api/v1/proxy/wake/{site.pk}/", HTTP_X_HOSTPANEL_URI="//evil.example/")
    # No engine answers here: still waking, with a page that retries by itself.
    assert response.status_code == 503 and response["Retry-After"] == "2"
    assert b'http-equiv="refresh"' in response.content
    assert Site.objects.get(pk=site.pk).asleep_since is None
    assert AuditLog.objects.filter(action="site.wake").count() == 1
    assert api.get(f"/api/v1/proxy/wake/{uuid.uuid4()}/").status_code == 404
