"""TCP port forwards: a site's container port published on its host's public address through
a port of the host's pool (PORT_FORWARD_RANGE), within the organization's quota. Each change
is audited and asks for a restart, which gives the site a container that publishes it."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import User
from audit import actions
from audit.services import record
from hosting import services
from hosting.models import DesiredState, PortForward, Site
from hosting.runtime import port_is_free

NO_NETWORK = ("none",)


def add(site: Site, *, actor: User | None, container_port: int) -> PortForward:
    """Forward the next free public port of the site's host to `container_port`."""
    if site.host.network_mode in NO_NETWORK:
        raise ValidationError(
            {"container_port": f"Containers on {site.host.name} have no network to publish on."}
        )
    if not 1 <= int(container_port) <= 65535:
        raise ValidationError({"container_port": "Use a port between 1 and 65535."})
    for _ in range(5):  # another request may take the same port first: pick again
        try:
            return _add(site, actor, int(container_port))
        except IntegrityError as exc:
            if PortForward.objects.filter(site=site, container_port=container_port).exists():
                raise ValidationError(
                    {"container_port": "This container port is forwarded already."}
                ) from exc
    raise ValidationError({"container_port": "The host's pool is busy; try again."})


def _add(site: Site, actor: User | None, container_port: int) -> PortForward:
    with transaction.atomic():
        site = services.lock_site(site)
        if PortForward.objects.filter(site=site, container_port=container_port).exists():
            raise ValidationError({"container_port": "This container port is forwarded already."})
        quota = services.quota_for(site.organization, lock=True)
        used = services.usage_of(site.organization)["port_forwards"]
        if used + 1 > quota.max_port_forwards:
            raise ValidationError(
                {
                    "quota": f"Organization quota exceeded: max_port_forwards is "
                    f"{quota.max_port_forwards}; this would be {used + 1}."
                }
            )
        forward = PortForward(
            organization=site.organization,
            site=site,
            host=site.host,
            container_port=container_port,
            public_port=_free_port(site),
        )
        with transaction.atomic():
            forward.save(force_insert=True)
        record(
            actions.PORT_FORWARD_ADD,
            actor=actor,
            organization=site.organization,
            target=site,
            changes=_described(forward),
        )
        _restart(site, actor)
    return forward


def _free_port(site: Site) -> int:
    host = site.host
    taken = set(PortForward.objects.filter(host=host).values_list("public_port", flat=True))
    low, high = settings.PORT_FORWARD_RANGE
    address = host.public_address or host.address
    for port in range(low, high + 1):
        if port not in taken and port_is_free(address, port):
            return port
    raise ValidationError({"container_port": f"No public port is left on {host.name}."})


def remove(forward: PortForward, *, actor: User | None) -> None:
    """Release the public port; the site restarts without it."""
    with transaction.atomic():
        site = services.lock_site(forward.site)
        described = _described(forward)
        forward.delete()
        record(
            actions.PORT_FORWARD_REMOVE,
            actor=actor,
            organization=site.organization,
            target=site,
            changes=described,
        )
        _restart(site, actor)


def _described(forward: PortForward) -> dict:
    return {
        "container_port": forward.container_port,
        "public_port": forward.public_port,
        "host": forward.host.name,
    }


def _restart(site: Site, actor: User | None) -> None:
    """The container publishes a fixed set: a running site gets a new one now, a stopped
    one says it needs a restart."""
    Site.objects.filter(pk=site.pk).update(needs_restart=True)
    if site.desired_state == DesiredState.RUNNING:
        services.restart_site(site, actor=actor)
