"""The reconciler: brings a site's containers on its engine to what the database asks for.

Services write the desired state (and bump `Site.generation`) in a short transaction; this
module converges the engine to it afterwards, outside any transaction, and records what it
saw in another short transaction. It is idempotent and claimed per site, so two workers never
work on one site at once, and a run that dies at any line is repaired by the next one:
containers are found by their site label, so one created just before a crash is removed
instead of duplicated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hosting import caddy, proxy, queue, runtime, services, workers
from hosting import docker as engine
from hosting.models import (
    Container,
    Deployment,
    DeploymentStatus,
    DesiredState,
    DockerHost,
    HostStatus,
    ObservedState,
    ReconcileStatus,
    Site,
)
from hostpanel.claims import claim

log = logging.getLogger(__name__)

# Rounds per run: a change committed while a round ran is picked up by the next round.
MAX_ROUNDS = 3
NONE_RUN = (ObservedState.STOPPED, ObservedState.REMOVED)
IN_FLIGHT = (DeploymentStatus.STARTING, DeploymentStatus.HEALTHY, DeploymentStatus.BUILDING)


@dataclass(frozen=True)
class Outcome:
    status: str  # converged, pending, failed, busy, gone
    reason: str = ""

    @property
    def converged(self) -> bool:
        return self.status == ReconcileStatus.CONVERGED


def reconcile_site(site_id, *, deadline: float | None = None) -> Outcome:
    """Converge one site. Transient engine errors are recorded on the site and raised (the
    caller retries); an engine refusal marks the site failed with the engine's reason."""
    ttl = timedelta(seconds=settings.DOCKER_TIMEOUT_SECONDS * 6 + 60)
    with claim(f"hosting.reconcile:{site_id}", ttl=ttl) as mine:
        if not mine:
            return Outcome("busy")
        for _ in range(MAX_ROUNDS):
            site = (
                Site.objects.select_related("organization", "host", "limits")
                .filter(pk=site_id)
                .first()
            )
            if site is None:
                return Outcome("gone")
            generation = site.generation
            try:
                observed = _converge(site)
            except engine.HostUnavailable as exc:
                _record_error(site, ReconcileStatus.PENDING, str(exc))
                services.mark_host_offline(exc.host, exc.reason)
                raise
            except engine.HostError as exc:
                _record_error(site, ReconcileStatus.PENDING, str(exc))
                raise
            except (engine.SpecRejected, runtime.NoHostAvailable) as exc:
                reason = str(exc)
                if isinstance(exc, engine.SpecRejected):
                    reason = f"Docker host {exc.host.name} refused: {exc.reason}"
                _record_error(site, ReconcileStatus.FAILED, reason)
                return Outcome(ReconcileStatus.FAILED, reason)
            if record_converged(site, generation, observed):
                return _route(site) or Outcome(ReconcileStatus.CONVERGED)
            if deadline is not None and time.monotonic() > deadline:
                break
        return Outcome(ReconcileStatus.PENDING, "the site changed again while it converged")


def _route(site: Site) -> Outcome | None:
    """The host's proxy follows the engine: the site stays pending while the proxy cannot
    be reached, and fails with Caddy's message when it rejects the config."""
    try:
        loaded = proxy.sync_host(site.host)
    except caddy.ProxyUnavailable as exc:
        _record_error(site, ReconcileStatus.PENDING, str(exc))
        return Outcome(ReconcileStatus.PENDING, str(exc))
    if loaded.error:
        _record_error(site, ReconcileStatus.FAILED, loaded.error)
        return Outcome(ReconcileStatus.FAILED, loaded.error)
    return None


def converge_now(site: Site) -> Site:
    """What the API does after a change commits: reconcile inline for at most
    RECONCILE_WAIT_SECONDS; what is not done by then is left to a worker. Returns the site
    as recorded afterwards (pending, failed or converged)."""
    wait = settings.RECONCILE_WAIT_SECONDS
    if workers.has_live_worker(site.host_id):
        # The host's own worker reaches its engine; this process may not: it is asked,
        # and awaited the same bounded time.
        queue.send("reconcile_site", str(site.pk))
        return _await_worker(site, time.monotonic() + wait)
    try:
        with engine.call_timeout(wait):
            outcome = reconcile_site(site.pk, deadline=time.monotonic() + wait)
    except (engine.HostUnavailable, engine.HostError):
        outcome = Outcome(ReconcileStatus.PENDING)
    if outcome.status in (ReconcileStatus.PENDING, "busy"):
        queue.send("reconcile_site", str(site.pk), countdown=settings.TASK_RETRY_BACKOFF_SECONDS)
    site.refresh_from_db()
    return site


def _await_worker(site: Site, deadline: float) -> Site:
    """Until the worker has converged the site or failed (a change leaves it pending)."""
    pause = 0.02
    while time.monotonic() < deadline:
        if (
            Site.objects.filter(pk=site.pk)
            .exclude(reconcile_status=ReconcileStatus.PENDING)
            .exists()
        ):
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
    site.refresh_from_db()
    return site


def pending_sites(host: DockerHost | None = None):
    """Sites whose engine has not caught up (their host online)."""
    sites = Site.objects.filter(reconcile_status=ReconcileStatus.PENDING).exclude(
        host__status=HostStatus.OFFLINE
    )
    if host is not None:
        sites = sites.filter(host=host)
    return sites


# --- one round ------------------------------------------------------------------------------


def _converge(site: Site) -> str:
    """Make the engine match the site; return the observed state. Engine calls only."""
    host = site.host
    rows = list(site.containers.filter(host=host).select_related("host", "deployment"))
    nothing_wanted = site.desired_state == DesiredState.STOPPED or not runtime.has_image(site)
    if not rows and nothing_wanted and site.observed_state in NONE_RUN:
        # Never ran a container (runtime.run_container leaves CREATED before it creates one,
        # so a crash mid-create is not mistaken for this): nothing to ask the engine.
        return ObservedState.REMOVED if site.is_deleted else ObservedState.STOPPED
    listed = {c["Id"]: c for c in engine.site_containers(host, str(site.pk))}
    _remove_orphans(host, listed, {row.docker_id for row in rows})

    if site.is_deleted:
        for row in rows:
            runtime.remove_container(row)
        return ObservedState.REMOVED

    serving = sorted(
        (r for r in rows if r.retired_at is None and _serves(r)),
        key=lambda r: r.created or timezone.now(),
        reverse=True,
    )
    for row in list(serving):
        if row.docker_id not in listed:  # removed behind the panel's back
            row.delete()
            serving.remove(row)
    current, extra = (serving[0], serving[1:]) if serving else (None, [])
    for row in extra:  # two serving containers only after a crash mid-replace
        runtime.remove_container(row)

    asleep = site.asleep_since is not None
    if site.desired_state == DesiredState.STOPPED or asleep:
        if current is None:
            return ObservedState.SLEEPING if asleep else ObservedState.STOPPED
        _apply_limits(site, current)
        if listed[current.docker_id]["State"] in ("running", "restarting", "paused"):
            engine.stop(host, current.docker_id)
        _set_row_state(current, ObservedState.EXITED)
        return ObservedState.SLEEPING if asleep else ObservedState.EXITED

    if current is not None and site.restart_requested and site.needs_restart:
        runtime.remove_container(current)
        current = None
    if current is None:
        if not runtime.has_image(site):
            return ObservedState.STOPPED  # built from its repository: waits for a deploy
        runtime.run_container(site)
        Site.objects.filter(pk=site.pk, generation=site.generation).update(
            needs_restart=False, restart_requested=False
        )
        return ObservedState.RUNNING
    _apply_limits(site, current)
    if site.restart_requested:
        engine.restart(host, current.docker_id)
        Site.objects.filter(pk=site.pk, generation=site.generation).update(restart_requested=False)
    elif listed[current.docker_id]["State"] != "running":
        engine.start(host, current.docker_id)
    _set_row_state(current, ObservedState.RUNNING)
    return ObservedState.RUNNING


def _serves(row: Container) -> bool:
    return row.deployment is None or row.deployment.status == DeploymentStatus.SUCCEEDED


def _remove_orphans(host: DockerHost, listed: dict, known: set[str]) -> None:
    """Labelled containers without a row: left by a crash after create, before the row.
    A deployment's container that is still starting has no row yet either: spared."""
    unknown = [cid for cid in listed if cid not in known]
    if not unknown:
        return
    deployment_ids = {
        listed[cid].get("Labels", {}).get(engine.LABEL_DEPLOYMENT)
        for cid in unknown
        if listed[cid].get("Labels", {}).get(engine.LABEL_DEPLOYMENT)
    }
    in_flight = {
        str(pk)
        for pk in Deployment.objects.filter(
            pk__in=deployment_ids, status__in=IN_FLIGHT
        ).values_list("pk", flat=True)
    }
    for cid in unknown:
        if listed[cid].get("Labels", {}).get(engine.LABEL_DEPLOYMENT) in in_flight:
            continue
        log.info("reconcile: removing orphan container %s on %s", cid[:12], host.name)
        engine.remove(host, cid)


def _apply_limits(site: Site, container: Container) -> None:
    """Limits change in place; one the engine refuses live waits for the next restart."""
    info = engine.inspect(site.host, container.docker_id)
    if not engine.limits_differ(info, site.limits):
        return
    try:
        engine.update_limits(site.host, container.docker_id, site.limits)
    except engine.SpecRejected:
        Site.objects.filter(pk=site.pk).update(needs_restart=True)


def _set_row_state(row: Container, state: str) -> None:
    if row.state != state:
        Container.objects.filter(pk=row.pk).update(state=state)


# --- what was observed ----------------------------------------------------------------------


def record_converged(site: Site, generation: int, observed: str) -> bool:
    """Record the observed state; converged only if no change came in meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        Site.objects.filter(pk=site.pk).update(observed_state=observed, reconciled_at=now)
        return bool(
            Site.objects.filter(pk=site.pk, generation=generation).update(
                reconcile_status=ReconcileStatus.CONVERGED,
                reconciled_generation=generation,
                reconcile_error="",
            )
        )


def _record_error(site: Site, status: str, reason: str) -> None:
    Site.objects.filter(pk=site.pk).update(
        reconcile_status=status, reconcile_error=reason[:2000], reconciled_at=timezone.now()
    )
