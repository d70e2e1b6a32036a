"""Health checks against a real HTTP server on 127.0.0.1, standing in for a site."""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audit.models import AuditLog
from hosting.models import DockerHost, Site
from hostpanel import probe
from monitoring import health
from monitoring.models import HealthCheck, HealthStatus, SiteHealth
from tests.docker_engines import free_port
from tests.hosting.factories import ensure_host, make_site


class FakeSite(ThreadingHTTPServer):
    """Answers every GET with `status` after `delay` seconds; remembers the paths asked."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = 200
        self.delay = 0.0
        self.location = ""
        self.paths: list[str] = []
        self.closing = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: FakeSite

    def do_GET(self):
        self.server.paths.append(self.path)
        if self.server.delay:
            self.server.closing.wait(self.server.delay)
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = FakeSite()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.closing.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def health_settings(settings):
    settings.HEALTH_FAILURE_THRESHOLD = 3
    settings.HEALTH_TIMEOUT_SECONDS = 2.0
    return settings


def running_site(org, port: int, *, path: str = "/healthz", **fields) -> Site:
    """A site the panel believes is running on the local host (address 127.0.0.1)."""
    site = make_site(org, internal_port=port, health_check_path=path, **fields)
    host = ensure_host()
    assert host.address == "127.0.0.1"
    Site.objects.filter(pk=site.pk).update(
        host=host, desired_state="running", observed_state="running"
    )
    return Site.objects.get(pk=site.pk)


def audits(site, action: str) -> int:
    return AuditLog.objects.filter(action=action, target_id=str(site.pk)).count()


def test_passing_check_is_recorded(cast, server, health_settings):
    site = running_site(cast.org, server.port)

    assert health.check_all_sites() == 1

    assert server.paths == ["/healthz"]
    [row] = HealthCheck.objects.filter(site=site)
    assert row.ok is True
    assert row.status_code == 200
    assert row.error == ""
    assert row.organization_id == cast.org.pk
    assert 0 < row.response_time_ms < 2000
    state = SiteHealth.objects.get(site=site)
    assert state.status == HealthStatus.HEALTHY
    assert state.consecutive_failures == 0
    assert state.last_checked_at == row.timestamp
    assert state.last_response_time_ms == row.response_time_ms
    assert state.organization_id == cast.org.pk


def test_unhealthy_at_threshold_audited_once_then_recovered(cast, server, health_settings):
    site = running_site(cast.org, server.port)
    server.status = 500

    for expected_failures in (1, 2):
        health.check_all_sites()
        state = SiteHealth.objects.get(site=site)
        assert state.consecutive_failures == expected_failures
        assert state.status == HealthStatus.UNKNOWN
    assert audits(site, "site.unhealthy") == 0

    health.check_all_sites()
    state = SiteHealth.objects.get(site=site)
    assert (state.status, state.consecutive_failures) == (HealthStatus.UNHEALTHY, 3)
    assert audits(site, "site.unhealthy") == 1
    entry = AuditLog.objects.get(action="site.unhealthy")
    assert entry.organization_id == cast.org.pk
    assert entry.changes["status_code"] == 500

    health.check_all_sites()
    health.check_all_sites()
    state = SiteHealth.objects.get(site=site)
    assert (state.status, state.consecutive_failures) == (HealthStatus.UNHEALTHY, 5)
    assert audits(site, "site.unhealthy") == 1  # at the transition only
    assert HealthCheck.objects.filter(site=site, ok=False, status_code=500).count() == 5

    server.status = 200
    health.check_all_sites()
    state = SiteHealth.objects.get(site=site)
    assert (state.status, state.consecutive_failures) == (HealthStatus.HEALTHY, 0)
    assert audits(site, "site.recovered") == 1

    health.check_all_sites()
    assert audits(site, "site.recovered") == 1
    assert audits(site, "site.unhealthy") == 1


def test_success_resets_the_count_below_threshold(cast, server, health_settings):
    site = running_site(cast.org, server.port)
    server.status = 503
    health.check_all_sites()
    health.check_all_sites()
    server.status = 204
    health.check_all_sites()
    server.status = 503
    health.check_all_sites()
    health.check_all_sites()

    state = SiteHealth.objects.get(site=site)
    assert (state.status, state.consecutive_failures) == (HealthStatus.HEALTHY, 2)
    assert audits(site, "site.unhealthy") == 0
    assert audits(site, "site.recovered") == 0  # healthy was never lost


def test_redirect_passes_and_is_not_followed(cast, server, health_settings):
    site = running_site(cast.org, server.port, path="/")
    server.status = 302
    server.location = f"http://127.0.0.1:{server.port}/elsewhere"

    health.check_all_sites()

    assert server.paths == ["/"]
    row = HealthCheck.objects.get(site=site)
    assert (row.ok, row.status_code) == (True, 302)


def test_timeout_is_a_failure(cast, server, health_settings):
    health_settings.HEALTH_TIMEOUT_SECONDS = 0.2
    site = running_site(cast.org, server.port)
    server.delay = 3.0

    started = time.monotonic()
    assert health.check_all_sites() == 1
    assert time.monotonic() - started < 2.0

    row = HealthCheck.objects.get(site=site)
    assert row.ok is False
    assert row.status_code is None
    assert "timed out" in row.error.lower() or "timeout" in row.error.lower()
    assert row.response_time_ms >= 150
    assert SiteHealth.objects.get(site=site).consecutive_failures == 1


def test_closed_port_is_a_failure(cast, health_settings):
    site = running_site(cast.org, free_port())

    health.check_all_sites()

    row = HealthCheck.objects.get(site=site)
    assert (row.ok, row.status_code) == (False, None)
    assert "refused" in row.error.lower()


def test_non_loopback_address_is_refused_without_connecting(
    cast, server, health_settings, monkeypatch
):
    attempts = []
    real_connect = http.client.HTTPConnection.connect

    def spy(conn):
        attempts.append((conn.host, conn.port))
        if conn.host != "127.0.0.1":  # even if the guard broke, never leave loopback
            raise AssertionError(f"connection attempted to {conn.host}")
        return real_connect(conn)

    monkeypatch.setattr(http.client.HTTPConnection, "connect", spy)
    health_settings.HEALTH_FAILURE_THRESHOLD = 1
    loopback_site = running_site(cast.org, server.port)
    site = running_site(cast.org, 8080)
    remote = DockerHost.objects.create(
        name="remote",
        endpoint="unix:///nonexistent.sock",
        address="192.0.2.10",  # TEST-NET-1
    )
    Site.objects.filter(pk=site.pk).update(host=remote)

    assert health.check_all_sites() == 2

    assert attempts == [("127.0.0.1", server.port)]
    row = HealthCheck.objects.get(site=site)
    assert (row.ok, row.status_code, row.error) == (False, None, probe.REFUSED)
    assert SiteHealth.objects.get(site=site).status == HealthStatus.UNHEALTHY
    assert HealthCheck.objects.get(site=loopback_site).ok is True


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.0.2.10", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 (an address to classify, not to bind)
        ("localhost", False),  # not an address: never resolved
    ],
)
def test_loopback_detection(address, loopback):
    assert probe.is_loopback(address) is loopback


def test_any_address_allowed_only_when_configured(settings, monkeypatch):
    tried = []

    def refuse(conn):
        tried.append(conn.host)
        raise ConnectionRefusedError("not really connecting")

    monkeypatch.setattr(http.client.HTTPConnection, "connect", refuse)
    assert probe.http_get("192.0.2.10", 80, "/", 0.1).error == probe.REFUSED
    assert tried == []

    settings.HEALTH_ALLOW_ANY_ADDRESS = True
    result = probe.http_get("192.0.2.10", 80, "/", 0.1)
    assert tried == ["192.0.2.10"]
    assert result.ok is False
    assert "ConnectionRefusedError" in result.error


def test_only_running_sites_on_a_host_are_checked(cast, server, health_settings):
    checked = running_site(cast.org, server.port, path="/a")
    stopped = running_site(cast.org, server.port, path="/b")
    Site.objects.filter(pk=stopped.pk).update(desired_state="stopped")
    exited = running_site(cast.org, server.port, path="/c")
    Site.objects.filter(pk=exited.pk).update(observed_state="exited")
    deleted = running_site(cast.org, server.port, path="/d")
    Site.objects.filter(pk=deleted.pk).update(deleted_at="2024-01-01T00:00:00Z")

    assert health.check_all_sites() == 1

    assert server.paths == ["/a"]
    assert list(HealthCheck.objects.values_list("site_id", flat=True)) == [checked.pk]


def test_no_sites_no_queries_written(db, health_settings):
    assert health.check_all_sites() == 0
    assert not HealthCheck.objects.exists()


def test_sites_are_checked_concurrently(cast, server, health_settings):
    server.delay = 0.5
    sites = [running_site(cast.org, server.port, path=f"/s{i}") for i in range(6)]

    started = time.monotonic()
    assert health.check_all_sites() == 6
    elapsed = time.monotonic() - started

    assert elapsed < 2.0, f"6 checks of 0.5 s took {elapsed:.2f} s: not concurrent"
    assert sorted(server.paths) == sorted(f"/s{i}" for i in range(6))
    assert HealthCheck.objects.filter(ok=True).count() == len(sites)
    assert SiteHealth.objects.filter(status=HealthStatus.HEALTHY).count() == len(sites)
