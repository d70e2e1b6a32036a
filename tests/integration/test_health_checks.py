"""Health checks of a real site container (busybox httpd on 127.0.0.1, host network)."""

from __future__ import annotations

import time
import urllib.request

import pytest

from audit.models import AuditLog
from hosting import docker as engine
from hosting import services
from hosting.models import Site
from monitoring import health
from monitoring.models import HealthCheck, HealthStatus, SiteHealth
from tests.conftest import client_for
from tests.docker_engines import TEST_IMAGE, free_port

pytestmark = pytest.mark.integration

SITES = "/api/v1/organizations/acme/sites/"


def wait_until_serving(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def health_settings(settings):
    settings.HEALTH_FAILURE_THRESHOLD = 2
    settings.HEALTH_TIMEOUT_SECONDS = 1.0
    return settings


def make_running_site(cast, port: int, path: str = "/") -> Site:
    response = client_for(cast.member).post(
        SITES,
        {
            "name": "Blog",
            "site_type": "docker",
            "image": TEST_IMAGE,
            "start_command": f"httpd -f -p 127.0.0.1:{port} -h /www",
            "internal_port": port,
            "health_check_path": path,
            "limits": {"memory_mb": 64, "cpu_percent": 50, "max_processes": 64},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["observed_state"] == "running"
    wait_until_serving(port)
    return Site.objects.select_related("host").get(slug="blog", deleted_at__isnull=True)


def test_real_site_goes_unhealthy_when_its_container_dies_and_recovers(
    cast, docker_host, health_settings
):
    port = free_port()
    site = make_running_site(cast, port)
    assert site.host.address == "127.0.0.1"

    assert health.check_all_sites() == 1
    row = HealthCheck.objects.get(site=site)
    assert (row.ok, row.status_code) == (True, 200)
    assert SiteHealth.objects.get(site=site).status == HealthStatus.HEALTHY

    # The container stops behind the panel's back: the site is still "running" in the
    # database until the next sync, and the checks fail.
    container = services.current_container(site)
    engine.stop(docker_host, container.docker_id, timeout=1)
    health.check_all_sites()
    health.check_all_sites()
    state = SiteHealth.objects.get(site=site)
    assert (state.status, state.consecutive_failures) == (HealthStatus.UNHEALTHY, 2)
    assert AuditLog.objects.filter(action="site.unhealthy", target_id=str(site.pk)).count() == 1
    failed = HealthCheck.objects.filter(site=site, ok=False)
    assert failed.count() == 2
    assert all(check.status_code is None and check.error for check in failed)

    engine.start(docker_host, container.docker_id)
    wait_until_serving(port)
    health.check_all_sites()
    state = SiteHealth.objects.get(site=site)
    assert (state.status, state.consecutive_failures) == (HealthStatus.HEALTHY, 0)
    assert AuditLog.objects.filter(action="site.recovered", target_id=str(site.pk)).count() == 1


def test_real_site_missing_health_path_fails_with_its_status(cast, docker_host, health_settings):
    site = make_running_site(cast, free_port(), path="/no-such-page")

    health.check_all_sites()

    row = HealthCheck.objects.get(site=site)
    assert (row.ok, row.status_code) == (False, 404)
    assert SiteHealth.objects.get(site=site).consecutive_failures == 1
