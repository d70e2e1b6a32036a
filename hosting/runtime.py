"""Site containers on their engine, and the rows that record them.

The one place a site's container is created or removed, used by the reconciler and by
deployments. Every engine call here runs outside a database transaction; each row write is
its own short transaction after the engine answered. A crash between the two leaves a
labelled container without a row, which the reconciler finds and removes (no duplicate).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from hosting import docker as engine
from hosting.models import Container, ObservedState, ResourceLimit, Site, SiteType
from hostpanel import crypto, probe


class NoHostAvailable(Exception):
    api_status = 503
    api_code = "no_host_available"


class Unhealthy(Exception):
    """A new container did not pass its health check; the message says why."""


def site_environment(site: Site) -> dict[str, str]:
    """The site's variables as the container gets them: the only place secrets are decrypted."""
    env = {}
    for var in site.env_vars.all():
        env[var.key] = crypto.decrypt(var.value) if var.is_secret else var.value
    return env


def allocate_port(site: Site) -> int:
    """The host port a new container of the site listens on ($PORT).

    With host networking every container needs a port of its own: the site's internal port
    when no container on the host holds it and nothing else listens there, else the first
    free one of SITE_PORT_RANGE (a deployment starts its new container beside the old one).
    """
    if site.host.network_mode != "host":
        return site.internal_port
    used = set(
        Container.objects.filter(host=site.host, port__isnull=False)
        .exclude(state=ObservedState.MISSING)
        .values_list("port", flat=True)
    )
    if site.internal_port not in used and port_is_free(site.host.address, site.internal_port):
        return site.internal_port
    low, high = settings.SITE_PORT_RANGE
    for port in range(low, high + 1):
        if port not in used and port_is_free(site.host.address, port):
            return port
    raise NoHostAvailable(f"No free port left on {site.host.name} in {low}-{high}.")


def port_is_free(address: str, port: int) -> bool:
    """Only a loopback host can be probed from here; others are trusted to the database."""
    if not address.startswith("127."):
        return True
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def has_image(site: Site) -> bool:
    """Whether the site has something to run before any deployment: a docker site that
    builds from its repository's Dockerfile has nothing until its first deploy."""
    return bool(site.deployed_image or site.image or site.site_type == SiteType.STATIC)


def run_container(
    site: Site,
    *,
    image: str = "",
    deployment=None,
    env: dict[str, str] | None = None,
    limits: ResourceLimit | None = None,
) -> Container:
    """Create and start a fresh container for the site on its host, then record its row.

    `env` and `limits` override the site's own (a rollback runs its snapshot's).
    """
    host = site.host
    port = allocate_port(site)
    if site.persistent_volume:
        engine.ensure_volume(host, site)
    extra = {engine.LABEL_DEPLOYMENT: str(deployment.pk)} if deployment is not None else {}
    spec = engine.container_spec(
        site,
        limits or site.limits,
        site_environment(site) if env is None else env,
        host,
        port=port,
        image=image or site.deployed_image,
        extra_labels=extra,
        forwards=list(site.port_forwards.values_list("container_port", "public_port")),
    )
    # Marks the site as having (maybe) a container before there is one, so the reconciler
    # looks for a labelled orphan after a crash between the create and the row below.
    Site.objects.filter(pk=site.pk, observed_state__in=(ObservedState.STOPPED,)).update(
        observed_state=ObservedState.CREATED
    )
    docker_id = engine.create_and_start(host, spec)
    try:
        return Container.objects.create(
            host=host,
            site=site,
            docker_id=docker_id,
            name=spec["name"],
            image=spec["image"],
            state=ObservedState.RUNNING,
            status="Up",
            labels=spec["labels"],
            created=timezone.now(),
            port=port,
            deployment=deployment,
        )
    except Exception:
        engine.remove(host, docker_id)
        raise


def remove_container(container: Container) -> None:
    """Remove the container from its engine, then its row."""
    engine.remove(container.host, container.docker_id)
    container.delete()


def serving_containers(site: Site):
    return site.containers.serving().filter(host=site.host)


def current_container(site: Site) -> Container | None:
    return serving_containers(site).order_by("-created").first()


def wait_healthy(
    host, container: Container, path: str, *, before_each: Callable[[], None] = lambda: None
) -> None:
    """GET `path` on the new container until it answers < 400 (deployments and moves).

    Raises Unhealthy after DEPLOY_HEALTH_TIMEOUT_SECONDS, at once for an address the panel
    may not call, and as soon as the container stops (with its output). `before_each` runs
    before every try (a deployment checks it was not cancelled).
    """
    if container.port is None:
        raise Unhealthy("The new container publishes no port to check.")
    url = f"http://{host.address}:{container.port}{path}"
    deadline = time.monotonic() + settings.DEPLOY_HEALTH_TIMEOUT_SECONDS
    last = "no answer"
    pause = 0.01  # most apps listen within a few hundred ms: poll fast, then back off
    next_state_check = 0.0
    while time.monotonic() < deadline:
        before_each()
        answer = probe.http_get(host.address, container.port, path, timeout=2)
        if answer.ok:
            return
        if answer.error == probe.REFUSED:
            raise Unhealthy(f"The health check {url} is not allowed: {answer.error}.")
        last = answer.error
        if time.monotonic() >= next_state_check:  # a crashed app fails at once, not at the deadline
            next_state_check = time.monotonic() + 0.25
            state = engine.inspect(host, container.docker_id)["State"]
            if state["Status"] != "running" or state.get("Restarting"):
                output = engine.container_logs(host, container.docker_id)
                raise Unhealthy(
                    f"The new container stopped before it was healthy (exit code "
                    f"{state.get('ExitCode')}; {last}). Its output:\n{output}"
                )
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    raise Unhealthy(
        f"The health check {url} failed for {settings.DEPLOY_HEALTH_TIMEOUT_SECONDS}s: {last}."
    )
