"""After a deployment a site's container listens on its own port: checks must go there."""

from datetime import timedelta

from django.utils import timezone

from hosting.models import Container
from monitoring import health
from monitoring.models import HealthCheck
from tests.docker_engines import free_port
from tests.monitoring.test_health import health_settings, running_site, server  # noqa: F401


def container(site, name: str, port: int, **fields) -> Container:
    fields.setdefault("created", timezone.now())
    return Container.objects.create(
        host=site.host, site=site, docker_id=name, name=name, image="x", state="running",
        port=port, **fields,
    )  # fmt: skip


def test_check_goes_to_the_serving_containers_port(cast, server, health_settings):  # noqa: F811
    site = running_site(cast.org, free_port())  # nothing listens on the internal port
    container(site, "c1", server.port)

    assert health.check_all_sites() == 1

    check = HealthCheck.objects.get(site=site)
    assert check.ok, check.error
    assert server.paths == ["/healthz"]


def test_check_ignores_a_retired_container_even_when_it_is_newer(cast, server, health_settings):  # noqa: F811
    site = running_site(cast.org, free_port())
    now = timezone.now()
    container(site, "c1", server.port, created=now)
    # Nothing listens on its port: a check sent there would fail.
    container(site, "c0", free_port(), created=now + timedelta(seconds=1), retired_at=now)

    assert health.check_all_sites() == 1

    assert HealthCheck.objects.get(site=site).ok
