"""Sites as real containers on real (private) Docker engines, driven through the API."""

from __future__ import annotations

import time
import urllib.request

import pytest

from audit.models import AuditLog
from hosting import docker as engine
from hosting import services
from hosting.models import DockerHost, EnvironmentVariable, HostStatus, Site
from tests.conftest import client_for
from tests.docker_engines import TEST_IMAGE, free_port

pytestmark = pytest.mark.integration

SITES = "/api/v1/organizations/acme/sites/"


def http_get(port: int, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def create_site(client, port: int, **extra):
    body = {
        "name": "Blog",
        "site_type": "docker",
        "image": TEST_IMAGE,
        "start_command": f"httpd -f -p 127.0.0.1:{port} -h /www",
        "internal_port": port,
        "limits": {"memory_mb": 64, "cpu_percent": 50, "max_processes": 64},
        **extra,
    }
    return client.post(SITES, body, format="json")


def container_of(site_slug: str):
    site = Site.objects.get(slug=site_slug, deleted_at__isnull=True)
    row = services.current_container(site)
    return site, row, engine.inspect(site.host, row.docker_id)


def test_site_created_through_api_runs_with_limits_policy_and_labels(cast, docker_host):
    port = free_port()
    response = create_site(client_for(cast.member), port)

    assert response.status_code == 201, response.json()
    assert response.json()["observed_state"] == "running"
    assert response.json()["host"] == "engine-1"
    assert b"hostpanel test site" in http_get(port)
    site, _row, info = container_of("blog")
    host_config = info["HostConfig"]
    assert host_config["Memory"] == 64 * 2**20
    assert host_config["MemorySwap"] == 64 * 2**20
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["PidsLimit"] == 64
    assert host_config["Privileged"] is False
    assert host_config["CapDrop"] == ["ALL"]
    assert set(host_config["CapAdd"]) <= set(engine.ALLOWED_CAPABILITIES)
    assert "no-new-privileges:true" in host_config["SecurityOpt"]
    assert host_config["Init"] is True  # SIGTERM reaches the app: graceful stops work
    assert not host_config["Binds"]
    assert not info["Mounts"]
    labels = info["Config"]["Labels"]
    assert labels[engine.LABEL_SITE] == str(site.pk)
    assert labels[engine.LABEL_ORGANIZATION] == str(cast.org.pk)
    assert AuditLog.objects.filter(action="site.create", target_id=str(site.pk)).exists()


def test_static_site_gets_read_only_root(cast, docker_host):
    port = free_port()
    response = client_for(cast.member).post(
        SITES,
        {"name": "Docs", "site_type": "static", "internal_port": port},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert b"hostpanel test site" in http_get(port)
    _, _, info = container_of("docs")
    assert info["HostConfig"]["ReadonlyRootfs"] is True


def test_env_reaches_container_and_secret_is_encrypted_at_rest(cast, docker_host):
    port = free_port()
    client = client_for(cast.member)
    assert create_site(client, port).status_code == 201
    env_url = f"{SITES}blog/env/"
    response = client.post(
        env_url, {"key": "DB_PASSWORD", "value": "hunter2-secret", "is_secret": True}
    )
    assert response.status_code == 201
    assert response.json()["value"] == "********"
    assert client.post(env_url, {"key": "MODE", "value": "prod"}).status_code == 201
    stored = EnvironmentVariable.objects.get(key="DB_PASSWORD")
    assert "hunter2" not in stored.value
    assert Site.objects.get(slug="blog").needs_restart is True

    assert client.post(f"{SITES}blog/restart/").status_code == 200
    site, _row, info = container_of("blog")
    container_env = info["Config"]["Env"]
    assert "DB_PASSWORD=hunter2-secret" in container_env
    assert "MODE=prod" in container_env
    assert site.needs_restart is False
    for entry in AuditLog.objects.filter(action__startswith="env."):
        assert "hunter2" not in str(entry.changes)


def test_start_stop_restart_delete_act_on_the_real_container(cast, docker_host):
    port = free_port()
    owner = client_for(cast.owner)
    assert create_site(owner, port).status_code == 201
    site, row, _ = container_of("blog")

    assert owner.post(f"{SITES}blog/stop/").json()["observed_state"] == "exited"
    assert engine.state_of(docker_host, row.docker_id) == "exited"

    assert owner.post(f"{SITES}blog/start/").json()["observed_state"] == "running"
    assert engine.state_of(docker_host, row.docker_id) == "running"
    started = engine.inspect(docker_host, row.docker_id)["State"]["StartedAt"]

    assert owner.post(f"{SITES}blog/restart/").status_code == 200
    assert engine.inspect(docker_host, row.docker_id)["State"]["StartedAt"] != started

    assert owner.delete(f"{SITES}blog/").status_code == 204
    assert engine.state_of(docker_host, row.docker_id) == "missing"
    site.refresh_from_db()
    assert site.deleted_at is not None  # soft delete keeps the row
    assert owner.get(f"{SITES}blog/").status_code == 404
    assert owner.get(SITES).json()["count"] == 0
    actions = set(AuditLog.objects.filter(target_id=str(site.pk)).values_list("action", flat=True))
    assert {"site.create", "site.stop", "site.start", "site.restart", "site.delete"} <= actions


def test_limits_change_in_place_without_restart(cast, docker_host):
    port = free_port()
    admin = client_for(cast.admin)
    assert create_site(admin, port).status_code == 201
    _, row, before = container_of("blog")

    response = admin.patch(
        f"{SITES}blog/limits/", {"memory_mb": 96, "cpu_percent": 25, "max_processes": 48}
    )

    assert response.status_code == 200, response.json()
    after = engine.inspect(docker_host, row.docker_id)
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["HostConfig"]["Memory"] == 96 * 2**20
    assert after["HostConfig"]["NanoCpus"] == 250_000_000
    assert after["HostConfig"]["PidsLimit"] == 48
    assert AuditLog.objects.filter(action="site.limits_update").count() == 1


def test_member_cannot_change_limits(cast, docker_host):
    assert create_site(client_for(cast.member), free_port()).status_code == 201
    response = client_for(cast.member).patch(f"{SITES}blog/limits/", {"memory_mb": 96})
    assert response.status_code == 403


def test_placement_uses_another_online_host(cast, docker_host, second_docker_host):
    services.update_host(docker_host, actor=None, status=HostStatus.MAINTENANCE)
    port = free_port()

    response = create_site(client_for(cast.member), port)

    assert response.status_code == 201, response.json()
    assert response.json()["host"] == "engine-2"
    _site, row, _ = container_of("blog")
    assert engine.state_of(second_docker_host, row.docker_id) == "running"
    assert engine.state_of(docker_host, row.docker_id) == "missing"
    assert b"hostpanel test site" in http_get(port)


def test_engine_down_creates_the_site_pending_naming_the_host(cast, db, tmp_path, sent_tasks):
    dead = services.create_host(
        actor=None, name="dead-engine", endpoint=f"unix://{tmp_path}/none.sock"
    )

    response = create_site(client_for(cast.member), free_port())

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["reconcile_status"] == "pending"
    assert "dead-engine" in body["reconcile_error"]
    site = Site.objects.get(slug="blog")
    assert not site.containers.exists()
    assert AuditLog.objects.filter(action="site.create").count() == 1
    assert ("reconcile_site", str(site.pk)) in sent_tasks
    dead.refresh_from_db()
    assert dead.status == HostStatus.OFFLINE
    assert AuditLog.objects.filter(action="host.offline", target_id=str(dead.pk)).exists()


def test_missing_image_is_400_and_nothing_is_created(cast, docker_host):
    response = create_site(client_for(cast.member), free_port(), image="no-such-image:1")
    assert response.status_code == 400
    assert "no-such-image" in response.json()["detail"]
    assert not Site.objects.exists()
    assert not engine.client(docker_host).containers.list(all=True)


def test_quota_refuses_the_site_and_no_container_starts(cast, docker_host):
    services.update_quota(cast.org, actor=None, max_sites=1)
    client = client_for(cast.member)
    assert create_site(client, free_port()).status_code == 201

    response = create_site(client, free_port(), name="Second")

    assert response.status_code == 400
    assert "max_sites is 1; this would be 2" in response.json()["fields"]["quota"][0]
    assert len(engine.client(docker_host).containers.list(all=True)) == 1


def test_host_ping_records_engine_facts(docker_host):
    assert docker_host.status == HostStatus.ONLINE
    assert docker_host.engine_version
    assert docker_host.cpus >= 1
    assert docker_host.memory_bytes > 0
    assert DockerHost.objects.get(pk=docker_host.pk).last_seen_at is not None


def test_runtime_logs_tail_and_follow_the_serving_container(cast, docker_host):
    port = free_port()
    counting = (
        f"sh -c 'httpd -p 127.0.0.1:{port} -h /www; i=0; "
        "while true; do i=$((i+1)); echo line-$i; sleep 0.1; done'"
    )
    assert create_site(client_for(cast.member), port, start_command=counting).status_code == 201
    viewer = client_for(cast.viewer)
    time.sleep(0.6)
    first = viewer.get(f"{SITES}blog/logs/?tail=3").json()
    assert first["container"] and len(first["lines"]) == 3
    numbers = [int(line["text"].removeprefix("line-")) for line in first["lines"]]
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    time.sleep(0.5)
    newer = viewer.get(f"{SITES}blog/logs/?tail=100&after={first['cursor']}").json()
    later = [int(line["text"].removeprefix("line-")) for line in newer["lines"]]
    assert later and later[0] == numbers[-1] + 1  # only what came after, nothing twice
    assert later == list(range(later[0], later[0] + len(later)))
    assert newer["cursor"] > first["cursor"]
    assert client_for(cast.outsider).get(f"{SITES}blog/logs/").status_code == 404


def test_runtime_logs_take_any_cursor_the_api_allows(cast, docker_host):
    port = free_port()
    assert create_site(client_for(cast.member), port).status_code == 201
    viewer = client_for(cast.viewer)
    for after in (1, 999_999_999, 10**18):  # under a second, at the second, far ahead
        response = viewer.get(f"{SITES}blog/logs/?after={after}")
        assert response.status_code == 200, (after, response.content)
