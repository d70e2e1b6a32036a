"""After a deployment a site's container listens on its own port: checks must go there."""

from datetime import timedelta

from django.utils import timezone

from hosting.models import Container
from monitoring import health
from monitoring.models import HealthCheck
from tests.docker_engines import free_port
from tests.monitoring.test_health import health_settings, running_site, server  # noqa: F401


def test_check_goes_to_the_serving_containers_port(cast, server, health_settings):  # noqa: F811
    site = running_site(cast.org, free_port())  # nothing listens on the internal port
    Container.objects.create(
        host=site.host,
        site=site,
        docker_id="c1",
        name="c1",
        image="x",
        state="running",
        created=timezone.now(),
        port=server.port,
    )

    assert health.check_all_sites() == 1

    check = HealthCheck.objects.get(site=site)
    assert check.ok, check.error
    assert server.paths == ["/healthz"]


def test_check_ignores_a_retired_container_even_when_it_is_newer(cast, server, health_settings):  # noqa: F811
    site = running_site(cast.org, free_port())
    now = timezone.now()
    Container.objects.create(
        host=site.host,
        site=site,
        docker_id="c1",
        name="c1",
        image="x",
        state="running",
        created=now,
        port=server.port,
    )
    Container.objects.create(
        host=site.host,
        site=site,
        docker_id="c0",
        name="c0",
        image="x",
        state="running",
        created=now + timedelta(seconds=1),
        port=free_port(),  # nothing listens: a check sent here fails
        retired_at=now,
    )

    assert health.check_all_sites() == 1

    assert HealthCheck.objects.get(site=site).ok
