"""A TCP port forward for real, on loopback: the site's container answers on the public port
it was given, after the restart that adding it asks for; removing it closes the port."""

from __future__ import annotations

import socket
import time

import pytest

from hosting import services
from hosting.models import PortForward
from hosting.reconcile import converge_now
from tests.conftest import client_for
from tests.docker_engines import TEST_IMAGE, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def exchange(port: int, timeout: float = 10.0) -> bytes:
    """A raw TCP request to 127.0.0.1:port (an HTTP one: the test's TCP service is httpd)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return b"".join(iter(lambda: conn.recv(4096), b""))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_a_forwarded_port_answers_on_the_public_address_and_closes_when_removed(
    org, owner, docker_host, settings
):
    low = free_port()
    settings.PORT_FORWARD_RANGE = (low, low + 20)
    docker_host.public_address = "127.0.0.1"
    docker_host.save()
    web = free_port()
    # The web port as usual, and a second service on the forwarded port ($TCP_PORT_7000, on
    # $PUBLIC_HOST: with host networking the app listens there itself).
    site = converge_now(
        services.create_site(
            org,
            actor=owner,
            name="Game",
            image=TEST_IMAGE,
            start_command="sh -c 'httpd -p $HOST:$PORT -h /www; "
            "exec httpd -f -p ${PUBLIC_HOST:-127.0.0.1}:${TCP_PORT_7000:-1} -h /www'",
            internal_port=web,
            limits={"memory_mb": 64, "cpu_percent": 50},
        )
    )
    before = services.current_container(site).docker_id
    url = f"/api/v1/organizations/{org.slug}/sites/{site.slug}/port-forwards/"

    response = client_for(owner).post(url, {"container_port": 7000}, format="json")

    assert response.status_code == 201, response.content
    forward = response.json()
    public = forward["public_port"]
    assert low <= public <= low + 20 and forward["address"] == "127.0.0.1"
    site.refresh_from_db()
    assert services.current_container(site).docker_id != before  # restarted to publish it
    assert b"hostpanel test site" in exchange(public)
    assert b"hostpanel test site" in exchange(web)  # the web port still serves

    gone = client_for(owner).delete(f"{url}{forward['id']}/")
    assert gone.status_code == 204
    assert not PortForward.objects.exists()
    deadline = time.monotonic() + 10
    while not refused(public):
        assert time.monotonic() < deadline, "the released port still answers"
        time.sleep(0.1)
    assert b"hostpanel test site" in exchange(web)
