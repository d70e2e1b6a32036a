"""Replaced containers without Docker: which containers serve, the build command line, and a
retire that meets an unreachable engine (a real one: the socket does not exist)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from django.utils import timezone

from audit.models import AuditLog
from hosting import builds, deployments
from hosting.models import Container, DockerHost
from tests.conftest import client_for
from tests.deployments import deploy_site, request
from tests.hosting.factories import SITE_SLUG, site_url

ROOT = Path(__file__).resolve().parents[2]


def container(site, name: str, **fields) -> Container:
    return Container.objects.create(
        host=site.host,
        site=site,
        docker_id=f"{name}-id",
        name=name,
        image="x",
        state="running",
        created=timezone.now(),
        **fields,
    )


def test_serving_leaves_out_retired_containers_and_unswitched_deployments(cast):
    site = deploy_site(cast.org)
    serving = container(site, "serving")
    container(site, "retired", retired_at=timezone.now())
    container(site, "unswitched", deployment=request(site))

    assert list(Container.objects.serving()) == [serving]
    assert list(site.containers.serving()) == [serving]


def test_retire_on_an_unreachable_engine_keeps_the_row_for_the_reaper(cast):
    site = deploy_site(cast.org)
    assert site.host.endpoint == "unix:///nonexistent.sock"
    long_ago = timezone.now() - timedelta(hours=1)
    old = container(site, "old", retired_at=long_ago)
    live = container(site, "live")

    assert deployments.retire_containers([str(old.pk), str(live.pk)]) == 0
    assert deployments.reap()["retired"] == 0

    old.refresh_from_db()
    assert old.retired_at == long_ago  # still marked: the next sweep tries again
    assert Container.objects.filter(pk=live.pk).exists()  # never retired: never touched
    assert not AuditLog.objects.filter(action="container.retire").exists()


def test_retire_of_rows_already_gone_is_a_no_op(cast):
    site = deploy_site(cast.org)
    gone = container(site, "gone", retired_at=timezone.now())
    Container.objects.filter(pk=gone.pk).delete()

    assert deployments.retire_containers([str(gone.pk)]) == 0


def test_build_uses_the_engines_default_network_unless_told_otherwise(settings, tmp_path):
    host = DockerHost(name="h", endpoint="unix:///x.sock")
    settings.DEPLOY_BUILD_MEMORY_MB = 300
    settings.DEPLOY_BUILD_CPU_PERCENT = 150

    cmd = builds.build_command(host, tmp_path, "Dockerfile", "t:1", {})

    assert "--network" not in cmd
    assert cmd[cmd.index("--memory") + 1] == "300m"
    assert cmd[cmd.index("--memory-swap") + 1] == "300m"
    assert cmd[cmd.index("--cpu-quota") + 1] == "150000"
    assert cmd[-1] == str(tmp_path)

    settings.DEPLOY_BUILD_NETWORK = "none"
    cmd = builds.build_command(host, tmp_path, "Dockerfile", "t:1", {})
    assert cmd[cmd.index("--network") + 1] == "none"


def test_host_network_for_builds_is_refused_at_start():
    env = {
        **os.environ,
        "DEPLOY_BUILD_NETWORK": "host",
        "DJANGO_SETTINGS_MODULE": "hostpanel.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0
    assert "DEPLOY_BUILD_NETWORK=host" in done.stderr


def test_containers_api_shows_when_a_container_was_retired(cast):
    site = deploy_site(cast.org)
    retired_at = timezone.now()
    container(site, "old", retired_at=retired_at)
    container(site, "new")

    response = client_for(cast.viewer).get(site_url(cast.org, SITE_SLUG, "containers"))

    assert response.status_code == 200
    shown = {row["name"]: row["retired_at"] for row in response.json()["results"]}
    assert shown["new"] is None
    assert shown["old"] is not None
    assert datetime.fromisoformat(shown["old"].replace("Z", "+00:00")) == retired_at
