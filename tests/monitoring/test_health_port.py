"""After a deployment a site's container listens on its own port: checks must go there."""

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
