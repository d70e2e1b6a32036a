"""More site lifecycles on a real (private) Docker engine, driven through the API: a site
created stopped, containers lost behind the panel's back, restarts that pick up new env,
limits changed while stopped, and deletion releasing containers and domains."""

from __future__ import annotations

import pytest

from audit.models import AuditLog
from hosting import docker as engine
from hosting import services
from hosting.models import Container, Domain, Site
from hosting.reconcile import converge_now
from tests.conftest import client_for
from tests.docker_engines import TEST_IMAGE
from tests.hosting.factories import site_url, sites_url

pytestmark = pytest.mark.integration

# PID 1 ignores SIGTERM unless it traps it: this one stops at once instead of after 10 s.
IDLE_COMMAND = "sh -c \"trap 'exit 0' TERM; while true; do sleep 1; done\""


def create_site(client, org, **extra):
    body = {
        "name": "Blog",
        "site_type": "docker",
        "image": TEST_IMAGE,
        "start_command": IDLE_COMMAND,
        "limits": {"memory_mb": 64, "cpu_percent": 50, "max_processes": 64},
        **extra,
    }
    response = client.post(sites_url(org), body, format="json")
    assert response.status_code == 201, response.content
    return Site.objects.get(pk=response.json()["id"])


def engine_containers(host, site: Site) -> list:
    """What the engine itself holds for the site, found by label (not through our rows)."""
    filters = {"label": f"{engine.LABEL_SITE}={site.pk}"}
    return engine.client(host).containers.list(all=True, filters=filters)


def current_docker_id(site: Site) -> str:
    return services.current_container(Site.objects.get(pk=site.pk)).docker_id


def env_of(host, docker_id: str) -> list[str]:
    return engine.inspect(host, docker_id)["Config"]["Env"]


def test_site_created_stopped_gets_its_container_when_started(cast, docker_host):
    member = client_for(cast.member)
    site = create_site(member, cast.org, desired_state="stopped")
    assert engine_containers(docker_host, site) == []
    assert member.get(site_url(cast.org, "blog", "containers")).json()["count"] == 0

    response = member.post(site_url(cast.org, "blog", "start"))

    assert response.status_code == 200, response.content
    assert (response.json()["desired_state"], response.json()["observed_state"]) == (
        "running",
        "running",
    )
    (container,) = engine_containers(docker_host, site)
    assert container.status == "running"
    assert container.labels[engine.LABEL_ORGANIZATION] == str(cast.org.pk)
    listed = member.get(site_url(cast.org, "blog", "containers")).json()["results"]
    assert [c["docker_id"] for c in listed] == [container.id]
    assert listed[0]["host"] == "engine-1"
    assert AuditLog.objects.filter(action="site.start", target_id=str(site.pk)).count() == 1


def test_container_removed_behind_the_panels_back_is_recreated_by_start(cast, docker_host):
    member = client_for(cast.member)
    site = create_site(member, cast.org)
    lost = current_docker_id(site)
    engine.client(docker_host).api.remove_container(lost, force=True)
    assert engine.state_of(docker_host, lost) == "missing"

    response = member.post(site_url(cast.org, "blog", "start"))

    assert response.status_code == 200, response.content
    assert response.json()["observed_state"] == "running"
    fresh = current_docker_id(site)
    assert fresh != lost
    assert engine.state_of(docker_host, fresh) == "running"
    assert [c.id for c in engine_containers(docker_host, site)] == [fresh]
    assert list(Container.objects.filter(site=site).values_list("docker_id", flat=True)) == [fresh]


def test_restart_after_env_change_runs_a_new_container_with_the_new_env(cast, docker_host):
    member = client_for(cast.member)
    site = create_site(member, cast.org)
    env_url = site_url(cast.org, "blog", "env")
    mode = member.post(env_url, {"key": "MODE", "value": "one"}).json()
    assert member.post(site_url(cast.org, "blog", "restart")).status_code == 200
    first = current_docker_id(site)
    assert "MODE=one" in env_of(docker_host, first)

    assert member.patch(f"{env_url}{mode['id']}/", {"value": "two"}).status_code == 200
    secret = {"key": "API_KEY", "value": "s3cr3t-value", "is_secret": True}
    assert member.post(env_url, secret).status_code == 201
    assert Site.objects.get(pk=site.pk).needs_restart is True
    response = member.post(site_url(cast.org, "blog", "restart"))

    assert response.status_code == 200, response.content
    assert response.json()["needs_restart"] is False
    second = current_docker_id(site)
    assert second != first
    assert engine.state_of(docker_host, first) == "missing"
    assert engine.state_of(docker_host, second) == "running"
    env = env_of(docker_host, second)
    assert "MODE=two" in env
    assert "MODE=one" not in env
    assert "API_KEY=s3cr3t-value" in env
    assert [c.id for c in engine_containers(docker_host, site)] == [second]


def test_restart_without_changes_keeps_the_container(cast, docker_host):
    member = client_for(cast.member)
    site = create_site(member, cast.org)
    before = current_docker_id(site)
    started = engine.inspect(docker_host, before)["State"]["StartedAt"]
    assert member.post(site_url(cast.org, "blog", "restart")).status_code == 200
    assert current_docker_id(site) == before
    assert engine.inspect(docker_host, before)["State"]["StartedAt"] != started


def test_limits_changed_while_stopped_apply_when_started(cast, docker_host):
    admin = client_for(cast.admin)
    site = create_site(admin, cast.org)
    assert admin.post(site_url(cast.org, "blog", "stop")).status_code == 200

    response = admin.patch(
        site_url(cast.org, "blog", "limits"), {"memory_mb": 96, "max_processes": 48}
    )
    assert response.status_code == 200, response.content
    assert admin.post(site_url(cast.org, "blog", "start")).status_code == 200

    host_config = engine.inspect(docker_host, current_docker_id(site))["HostConfig"]
    assert host_config["Memory"] == 96 * 2**20
    assert host_config["PidsLimit"] == 48


def test_deleting_a_site_removes_its_container_and_releases_its_domains(cast, docker_host):
    owner = client_for(cast.owner)
    site = create_site(owner, cast.org)
    domain = owner.post(site_url(cast.org, "blog", "domains"), {"hostname": "blog.example.com"})
    assert domain.status_code == 201, domain.content
    assert len(engine_containers(docker_host, site)) == 1

    assert owner.delete(site_url(cast.org, "blog")).status_code == 204

    assert engine_containers(docker_host, site) == []
    assert not Container.objects.filter(site=site).exists()
    assert not Domain.objects.filter(hostname="blog.example.com").exists()
    # The hostname is free again, for another organization as for this one.
    converge_now(
        services.create_site(
            cast.other_org, actor=None, name="Theirs", image=TEST_IMAGE, desired_state="stopped"
        )
    )
    other = client_for(cast.other_owner).post(
        site_url(cast.other_org, "theirs", "domains"), {"hostname": "blog.example.com"}
    )
    assert other.status_code == 201, other.content


def test_deleting_a_stopped_site_removes_its_exited_container(cast, docker_host):
    owner = client_for(cast.owner)
    site = create_site(owner, cast.org)
    assert owner.post(site_url(cast.org, "blog", "stop")).status_code == 200
    (container,) = engine_containers(docker_host, site)
    assert container.status == "exited"

    assert owner.delete(site_url(cast.org, "blog")).status_code == 204

    assert engine_containers(docker_host, site) == []
