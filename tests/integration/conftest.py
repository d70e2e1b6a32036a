import uuid

import pytest

from hosting import deployments, services
from hosting.models import DockerHost, Site
from hosting.reconcile import converge_now
from tests import caddy_proxies, docker_engines
from tests.conftest import route_task
from tests.docker_engines import free_port
from tests.factories import make_org, make_user
from tests.integration import processes
from tests.integration.git_repos import Repo


@pytest.fixture(autouse=True)
def _integration_settings(settings):
    settings.HOSTPANEL_STATIC_IMAGE = docker_engines.TEST_IMAGE
    # No ACME server is reachable: should a config with ACME reach a real Caddy, it asks a
    # loopback port that refuses, never the network.
    settings.ACME_DIRECTORY_URL = "https://127.0.0.1:9/directory"


@pytest.fixture(autouse=True)
def retired_at_once(monkeypatch, sent_tasks) -> list[list[str]]:
    """The retire task a switch sends (after DEPLOY_DRAIN_SECONDS) runs at once, in this
    process: no message goes to a broker. Returns the batches; tests of the drain itself
    route `retire_containers` again."""
    batches: list[list[str]] = []

    def retire_now(container_ids):
        batches.append(container_ids)
        deployments.retire_containers(container_ids)

    route_task(monkeypatch, "retire_containers", retire_now)
    return batches


@pytest.fixture
def owner():
    return make_user()


@pytest.fixture
def org(owner):
    return make_org(owner, "Acme", slug="acme")


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


@pytest.fixture
def broker():
    """The real Redis, its queue empty before and after the test (skips when unreachable)."""
    client = processes.redis_or_skip()
    processes.clear_queue(client)
    yield client
    processes.clear_queue(client)


@pytest.fixture
def proxied_host(docker_host) -> DockerHost:
    """docker_host with its own private Caddy on a free loopback port (bin/caddy)."""
    caddy_proxies.forget("1")  # a fresh proxy: nothing resumed from another test
    admin = caddy_proxies.start("1")
    docker_host.proxy_admin = admin
    docker_host.proxy_listen = "127.0.0.1"
    docker_host.proxy_http_port = docker_engines.free_port()
    docker_host.proxy_access_log = str(caddy_proxies.access_log("1"))
    docker_host.save()
    yield docker_host
    caddy_proxies.stop("1")
    caddy_proxies.forget("1")


# --- deployments from git repositories (the task run_deployment goes to a list) ---


@pytest.fixture
def enqueued(monkeypatch) -> list[uuid.UUID]:
    sent: list[str] = []
    route_task(monkeypatch, "run_deployment", lambda pk: sent.append(uuid.UUID(pk)))
    return sent


@pytest.fixture
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "repo")


@pytest.fixture
def make_site(org, owner, docker_host, enqueued):
    def make(repo: Repo, **fields) -> Site:
        fields.setdefault("name", "Blog")
        fields.setdefault("site_type", "static")
        fields.setdefault("internal_port", free_port())
        limits = fields.pop("limits", {"memory_mb": 64, "cpu_percent": 50})
        return converge_now(
            services.create_site(org, actor=owner, repository_url=repo.url, limits=limits, **fields)
        )

    return make
