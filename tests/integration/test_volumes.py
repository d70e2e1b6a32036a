"""A site's /data volume on a real engine: kept across deployments, restarts and rollbacks,
measured, downloaded by admins as a streamed tar, removed a while after the site is deleted."""

from __future__ import annotations

import io
import tarfile
from datetime import timedelta

import pytest
from django.utils import timezone
from docker.errors import NotFound

from audit.models import AuditLog
from hosting import deployments, services, volumes
from hosting import docker as engine
from hosting.models import Site
from hosting.reconcile import converge_now
from monitoring import collectors
from tests.conftest import client_for
from tests.factories import add_member, make_user
from tests.integration.test_deployments import (  # noqa: F401 (deploy_settings: autouse)
    deploy,
    deploy_settings,
    full_log,
    wait_http,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def run_in(site: Site, *command: str) -> str:
    container = services.current_container(site)
    result = engine.client(site.host).containers.get(container.docker_id).exec_run(list(command))
    assert result.exit_code == 0, result.output
    return result.output.decode()


def archive_url(site: Site) -> str:
    return f"/api/v1/organizations/{site.organization.slug}/sites/{site.slug}/volume-archive/"


def test_data_survives_deploys_restarts_and_rollbacks_and_downloads_as_tar(
    make_site, repo, owner, org, docker_host
):
    repo.commit("v1", {"index.html": "<h1>one</h1>\n"})
    site = make_site(repo, persistent_volume=True)
    result, v1 = deploy(site, owner)
    assert result == "succeeded", full_log(v1)
    info = engine.inspect(docker_host, services.current_container(site).docker_id)
    [mount] = info["Mounts"]
    assert (mount["Type"], mount["Name"], mount["Destination"]) == (
        "volume",
        site.volume_name,
        "/data",
    )
    assert mount["RW"] is True and info["HostConfig"]["ReadonlyRootfs"] is True
    run_in(site, "sh", "-c", "echo kept > /data/note.txt; mkdir -p /data/db; echo x > /data/db/a")
    first = services.current_container(site).docker_id

    repo.commit("v2", {"index.html": "<h1>two</h1>\n"})
    result, v2 = deploy(site, owner)
    assert result == "succeeded", full_log(v2)
    assert services.current_container(site).docker_id != first
    assert run_in(site, "cat", "/data/note.txt") == "kept\n"

    services.restart_site(site, actor=owner)
    converge_now(site)
    assert run_in(site, "cat", "/data/note.txt") == "kept\n"

    back = deployments.request_rollback(v1, actor=owner)
    assert deployments.execute(back.pk, worker="test") == "succeeded"
    assert run_in(site, "cat", "/data/db/a") == "x\n"

    assert collectors.measure_disk(docker_host) >= 1
    site.refresh_from_db()
    assert site.volume_bytes >= len("kept\nx\n") and site.volume_measured_at is not None

    response = client_for(owner).get(archive_url(site))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/x-tar"
    assert "attachment;" in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("data/note.txt").read() == b"kept\n"
        assert tar.extractfile("data/db/a").read() == b"x\n"
    entry = AuditLog.objects.get(action="site.volume_download")
    assert entry.actor == owner and entry.target_id == str(site.pk)
    # the helper container that read the volume is gone; the site's own still serves
    names = [c.name for c in engine.client(docker_host).containers.list(all=True)]
    assert not [n for n in names if n.startswith("hp-archive-")]
    assert b"one" in wait_http(services.current_container(site).port)

    member, outsider = make_user(), make_user()
    add_member(org, member, "member")
    assert client_for(member).get(archive_url(site)).status_code == 403
    assert client_for(outsider).get(archive_url(site)).status_code == 404


def test_a_deleted_sites_volume_is_removed_after_the_retention(
    make_site, repo, owner, docker_host, settings
):
    settings.VOLUME_RETENTION_HOURS = 24
    repo.commit("v1", {"index.html": "<h1>one</h1>\n"})
    site = make_site(repo, persistent_volume=True)
    assert deploy(site, owner)[0] == "succeeded"
    run_in(site, "sh", "-c", "echo bye > /data/x")
    converge_now(services.delete_site(site, actor=owner))
    api = engine.client(docker_host).api

    assert volumes.purge_deleted() == 0  # within the retention: kept
    assert api.inspect_volume(site.volume_name)["Name"] == site.volume_name

    assert volumes.purge_deleted(timezone.now() + timedelta(hours=25)) == 1
    with pytest.raises(NotFound):
        api.inspect_volume(site.volume_name)
    site.refresh_from_db()
    assert site.volume_removed_at is not None
    assert AuditLog.objects.filter(action="site.volume_remove", target_id=str(site.pk)).exists()
    assert volumes.purge_deleted(timezone.now() + timedelta(hours=25)) == 0  # done once


def test_a_site_without_a_volume_has_nothing_to_download(make_site, repo, owner):
    site = make_site(repo)
    response = client_for(owner).get(archive_url(site))
    assert response.status_code == 404
    assert "no /data volume" in response.json()["detail"]
