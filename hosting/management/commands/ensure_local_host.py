"""Used by bin/run: a new install gets the local Docker engine as its first host, and every
host without a proxy gets the Caddy bin/run started (a one-machine install)."""

import os

from django.core.management.base import BaseCommand

from hosting import docker as engine
from hosting import services
from hosting.models import DockerHost, HostStatus

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class Command(BaseCommand):
    help = (
        "Register the engine at DOCKER_HOST (or the default socket) when no Docker host exists "
        "and it answers; give hosts without a proxy the one named by --proxy-admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("--proxy-admin", default="", help="unix:///path/admin.sock")
        parser.add_argument("--http-port", type=int, default=8080)
        parser.add_argument("--https-port", type=int, default=8443)
        parser.add_argument("--access-log", default="", help="where that Caddy logs requests")

    def handle(self, *args, proxy_admin, http_port, https_port, access_log, **options):
        if not DockerHost.objects.exists():
            endpoint = os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
            if not endpoint.startswith(("unix://", "tcp://", "ssh://")):
                self.stdout.write(f"DOCKER_HOST={endpoint} is not an endpoint hostpanel uses.")
            else:
                self._register(endpoint)
        if proxy_admin:
            for host in DockerHost.objects.filter(proxy_admin=""):
                services.update_host(
                    host,
                    actor=None,
                    proxy_admin=proxy_admin,
                    proxy_http_port=http_port,
                    proxy_https_port=https_port,
                    proxy_access_log=access_log,
                )
                self.stdout.write(
                    f"Host {host.name}: its sites are routed by the proxy at {proxy_admin} "
                    f"(HTTP port {http_port})."
                )

    def _register(self, endpoint: str) -> None:
        host = DockerHost(name="local", endpoint=endpoint)
        try:
            engine.ping(host)
        except (engine.HostUnavailable, engine.HostError, engine.SpecRejected) as exc:
            self.stdout.write(
                f"No Docker host is registered and the engine at {endpoint} does not answer "
                f"({exc}); add one in the admin."
            )
            return
        host = services.create_host(
            actor=None, name="local", endpoint=endpoint, network_mode="host"
        )
        host = services.ping_host(host, actor=None)
        state = "online" if host.status == HostStatus.ONLINE else host.status
        self.stdout.write(f"Registered the Docker engine at {endpoint} as host 'local' ({state}).")
