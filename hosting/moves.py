"""Moving a site to another Docker host without dropping a request.

Staff ask (`request_move`: checked against the target's capacity, labels and draining,
audited); a worker runs it (`execute`, under the site's reconcile claim so the reconciler
waits): the image the site runs now is copied to the target when only the old engine has
it (a build), a container with the site's current configuration starts there and must
answer its health check, then one short transaction switches the site's host and retires
the old containers. Both proxies are loaded after the commit: the new host's routes the
site, and the old host's forwards the visitors that still reach it (DNS naming the old
host) to the new container for MOVE_FORWARD_HOURS. The old container is stopped after the
drain, once the old proxy no longer points at it (deployments' retirement). A move that
fails removes what it started and leaves the site where it was, serving.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit import actions
from audit.services import record
from hosting import caddy, placement, proxy, queue, runtime, services
from hosting import docker as engine
from hosting.deployments.queue import schedule_retirement
from hosting.models import (
    FINAL_DEPLOYMENT_STATES,
    Container,
    DesiredState,
    DockerHost,
    ObservedState,
    Site,
)
from hostpanel.claims import claim

log = logging.getLogger(__name__)


class MoveFailed(Exception):
    pass


def request_move(site: Site, target: DockerHost, *, actor: User | None, send: bool = True) -> Site:
    """Check the target can take the site and record the move; a worker carries it out
    (`send`), or the caller does (`execute`)."""
    with transaction.atomic():
        site = services.lock_site(site)
        if site.moving_to_id is not None:
            raise ValidationError({"host": f"{site.name} is already moving."})
        if target.pk == site.host_id:
            raise ValidationError({"host": f"{site.name} already runs on {target.name}."})
        if site.deployments.exclude(status__in=FINAL_DEPLOYMENT_STATES).exists():
            raise ValidationError({"host": "A deployment is queued or running: move it after."})
        if site.persistent_volume:
            raise ValidationError(
                {"host": "Its /data volume lives on its host and does not move with it: "
                 "download it (volume-archive), turn it off, then move the site."}
            )  # fmt: skip
        if site.port_forwards.exists():
            raise ValidationError(
                {"host": "Its TCP port forwards belong to its host: remove them first."}
            )
        room = placement.rooms(DockerHost.objects.filter(pk=target.pk))[0]
        limits = site.limits
        refused = placement.why_not(
            room, limits.memory_mb, limits.cpu_percent, site.required_labels or {}
        )
        if refused:
            raise ValidationError({"host": f"{refused}."})
        Site.objects.filter(pk=site.pk).update(moving_to=target, move_error="")
        record(
            actions.SITE_MOVE,
            actor=actor,
            organization=site.organization,
            target=site,
            changes={"from": site.host.name, "to": target.name},
        )
        site_id = str(site.pk)
        if send:
            transaction.on_commit(lambda: queue.send("move_site", site_id))
    site.refresh_from_db()
    return site


def execute(site_id) -> str:
    """Carry out a requested move; "busy" when the reconciler holds the site (retry)."""
    ttl = timedelta(seconds=settings.DEPLOY_HEALTH_TIMEOUT_SECONDS + 300)
    with claim(f"hosting.reconcile:{site_id}", ttl=ttl) as mine:
        if not mine:
            return "busy"
        site = (
            Site.objects.select_related("organization", "host", "moving_to", "limits")
            .filter(pk=site_id, moving_to__isnull=False)
            .first()
        )
        if site is None:
            return "nothing to move"
        old, target = site.host, site.moving_to
        assert target is not None
        try:
            new = _start_on(site, target)
        except (MoveFailed, engine.HostUnavailable, engine.HostError, engine.SpecRejected,
                runtime.NoHostAvailable) as exc:  # fmt: skip
            _failed(site, target, str(exc))
            return "failed"
        try:
            _switch(site, old, target, new)
        except ValidationError as exc:  # deleted meanwhile
            if new is not None:
                runtime.remove_container(new)
            _failed(site, target, "; ".join(exc.messages))
            return "failed"
    _route(site, old, target)
    return "moved"


def _start_on(site: Site, target: DockerHost) -> Container | None:
    """The site's container on the target, healthy; None for a site not running now."""
    current = runtime.current_container(site)
    if site.desired_state != DesiredState.RUNNING or current is None:
        return None  # nothing serves: the reconciler starts it on the new host if wanted
    image = current.image
    _ensure_image(site.host, target, image)
    site.host = target  # this instance only: the row changes at the switch
    try:
        new = runtime.run_container(site, image=image)
    finally:
        site.host = current.host
    try:
        _wait_healthy(site, target, new)
    except (MoveFailed, engine.HostUnavailable, engine.HostError):
        runtime.remove_container(new)
        raise
    return new


def _ensure_image(source: DockerHost, target: DockerHost, image: str) -> None:
    """A built image exists only on the engine that built it: copy it over."""
    try:
        engine.image_id(target, image)
    except engine.SpecRejected:  # not there
        engine.copy_image(source, target, image)


def _wait_healthy(site: Site, target: DockerHost, container: Container) -> None:
    path = site.health_check_path or "/"
    try:
        runtime.wait_healthy(target, container, path)
    except runtime.Unhealthy as exc:
        raise MoveFailed(
            f"the new container on {target.name} did not answer {path}: {exc}"
        ) from exc


def _switch(site: Site, old: DockerHost, target: DockerHost, new: Container | None) -> None:
    with transaction.atomic():
        site = services.lock_site(site)
        replaced = Container.objects.filter(site=site, host=old, retired_at__isnull=True)
        retired = [str(pk) for pk in replaced.values_list("pk", flat=True)]
        replaced.update(retired_at=timezone.now())
        Site.objects.filter(pk=site.pk).update(
            host=target,
            previous_host=old,
            moved_at=timezone.now(),
            moving_to=None,
            move_error="",
            **({"observed_state": ObservedState.RUNNING} if new else {}),
        )
        services.mark_pending(site)  # the reconciler confirms it on the new host
        record(
            actions.SITE_MOVED,
            actor=None,
            organization=site.organization,
            target=site,
            changes={"from": old.name, "to": target.name, "retired": len(retired)},
        )
        if retired:
            transaction.on_commit(lambda: schedule_retirement(retired), robust=True)
        site_id = str(site.pk)
        transaction.on_commit(lambda: queue.send("reconcile_site", site_id), robust=True)


def _route(site: Site, old: DockerHost, target: DockerHost) -> None:
    """The new host's proxy first, so the old one never forwards to a route-less name."""
    for host in (target, old):
        try:
            loaded = proxy.sync_host(host)
        except caddy.ProxyUnavailable as exc:  # the periodic resync loads it
            log.warning("site %s moved; proxy of %s not loaded yet: %s", site.pk, host.name, exc)
            continue
        if loaded.error:
            log.error("site %s moved; proxy of %s refused: %s", site.pk, host.name, loaded.error)


def _failed(site: Site, target: DockerHost, reason: str) -> None:
    with transaction.atomic():
        Site.objects.filter(pk=site.pk).update(moving_to=None, move_error=reason[:2000])
        record(
            actions.SITE_MOVE_FAILED,
            actor=None,
            organization=site.organization,
            target=site,
            changes={"to": target.name, "error": reason[:500]},
        )


def forwarded_sites(host: DockerHost):
    """Sites that moved away from the host recently: its proxy still forwards them."""
    since = timezone.now() - timedelta(hours=settings.MOVE_FORWARD_HOURS)
    return Site.objects.alive().filter(previous_host=host, moved_at__gte=since).exclude(host=host)
