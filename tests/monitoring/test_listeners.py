"""Did the answer come from the site's container? Real sockets and the real /proc; the only
stand-in is a cgroup folder naming the processes (a container's cgroup cannot be made
without an engine) — and a real host-networked container of the private engine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import docker
import pytest
from django.utils import timezone

from hosting.models import Container, DockerHost
from monitoring import cgroups, health, listeners
from monitoring.models import HealthCheck
from tests import docker_engines
from tests.docker_engines import free_port
from tests.monitoring.test_health import health_settings, running_site, server  # noqa: F401


@pytest.fixture
def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def stranger():
    """A process that holds no socket (the container of another site, say)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child.pid
    child.kill()
    child.wait()


def test_the_listening_process_is_recognised(listening, stranger):
    assert listeners.container_answers([os.getpid()], "127.0.0.1", listening) is True
    assert listeners.container_answers([stranger, os.getpid()], "127.0.0.1", listening) is True
    # Someone listens there, but not this process: the answer came from elsewhere.
    assert listeners.container_answers([stranger], "127.0.0.1", listening) is False


def test_a_wildcard_listener_counts_for_every_address(stranger):
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 -- listens for a moment; nothing is sent
        sock.listen()
        port = sock.getsockname()[1]
        assert listeners.listening_inodes(os.getpid(), "127.0.0.1", port)
        assert listeners.container_answers([os.getpid()], "127.0.0.1", port) is True
        assert listeners.container_answers([stranger], "127.0.0.1", port) is False


def test_what_cannot_be_read_is_cannot_tell(listening):
    nobody = free_port()
    assert listeners.container_answers([os.getpid()], "127.0.0.1", nobody) is None
    assert listeners.container_answers([], "127.0.0.1", listening) is None
    assert listeners.container_answers(None, "127.0.0.1", listening) is None
    assert listeners.container_answers([2**22 + 7], "127.0.0.1", listening) is None  # no such pid


@pytest.fixture
def cgroup_of(tmp_path, settings):
    """A cgroup v2 tree where container `docker_id` has the given processes."""
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    settings.HOSTPANEL_CGROUP_ROOT = str(tmp_path)

    def make(docker_id: str, *pids: int) -> None:
        folder = tmp_path / "docker" / docker_id
        folder.mkdir(parents=True)
        (folder / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in pids))

    return make


def host_networked_site(org, port):
    site = running_site(org, free_port())
    DockerHost.objects.filter(pk=site.host_id).update(network_mode="host")
    Container.objects.create(
        host=site.host, site=site, docker_id="c1", name="c1", image="x", state="running",
        port=port, created=timezone.now(),
    )  # fmt: skip
    return site


def test_a_port_answered_by_the_sites_container_passes(cast, server, health_settings, cgroup_of):  # noqa: F811
    site = host_networked_site(cast.org, server.port)
    cgroup_of("c1", os.getpid())  # this process runs the server

    assert health.check_all_sites() == 1

    check = HealthCheck.objects.get(site=site)
    assert check.ok, check.error


def test_a_port_answered_by_another_process_fails(
    cast,
    server,  # noqa: F811
    health_settings,  # noqa: F811
    cgroup_of,
    stranger,
):
    site = host_networked_site(cast.org, server.port)
    cgroup_of("c1", stranger)  # the container runs, but the server is someone else

    assert health.check_all_sites() == 1

    check = HealthCheck.objects.get(site=site)
    assert not check.ok
    assert check.status_code == 200
    assert f"Port {server.port} answered, but not from the site's container" in check.error


def test_bridge_networking_and_unknown_cgroups_trust_the_answer(
    cast,
    server,  # noqa: F811
    health_settings,  # noqa: F811
    cgroup_of,
    stranger,
):
    site = host_networked_site(cast.org, server.port)
    cgroup_of("other", stranger)  # no cgroup for c1 here: cannot tell
    assert health.check_all_sites() == 1
    assert HealthCheck.objects.get(site=site).ok

    DockerHost.objects.filter(pk=site.host_id).update(network_mode="bridge")
    cgroup_of("c1", stranger)  # the engine's port mapping is the proof there
    HealthCheck.objects.all().delete()
    assert health.check_all_sites() == 1
    assert HealthCheck.objects.get(site=site).ok


@pytest.fixture
def host_networked_httpd():
    endpoint = docker_engines.endpoints()[0]
    client = docker.DockerClient(base_url=endpoint, timeout=30)
    port = free_port()
    container = client.containers.run(
        docker_engines.TEST_IMAGE,
        ["httpd", "-f", "-p", f"127.0.0.1:{port}"],
        detach=True,
        network_mode="host",
    )
    try:
        yield container, port
    finally:
        container.remove(force=True)
        client.close()


def test_a_real_containers_listener_is_its_own(host_networked_httpd, listening):
    container, port = host_networked_httpd
    reader = cgroups.reader()
    pids = reader.pids(container.id)
    assert pids, "the container's cgroup lists its processes"
    for _ in range(100):  # httpd binds right after it starts
        if listeners.listening_inodes(pids[0], "127.0.0.1", port):
            break
        time.sleep(0.05)
    assert listeners.container_answers(pids, "127.0.0.1", port) is True
    # This test process listens too, in the same (host) network: not the container's socket.
    assert listeners.container_answers(pids, "127.0.0.1", listening) is False
