import pytest

from hosting import services
from hosting.models import DockerHost
from tests import docker_engines


@pytest.fixture(autouse=True)
def _integration_settings(settings):
    settings.HOSTPANEL_STATIC_IMAGE = docker_engines.TEST_IMAGE


@pytest.fixture
def docker_endpoints():
    endpoints = docker_engines.endpoints()
    yield endpoints
    docker_engines.remove_all_containers()


def _host(name: str, endpoint: str) -> DockerHost:
    host = services.create_host(actor=None, name=name, endpoint=endpoint, network_mode="host")
    return services.ping_host(host, actor=None)


@pytest.fixture
def docker_host(db, docker_endpoints) -> DockerHost:
    return _host("engine-1", docker_endpoints[0])


@pytest.fixture
def second_docker_host(db, docker_endpoints) -> DockerHost:
    return _host("engine-2", docker_endpoints[1])
