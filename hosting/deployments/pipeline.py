"""Running one deployment: claim it, clone, build, start beside the old container, wait
for health, switch. A heartbeat proves the worker is alive; the workdir holds the clone."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from hosting import builds, caddy, git, proxy, runtime, services
from hosting import docker as engine
from hosting.deployments.logs import LogWriter
from hosting.deployments.queue import kick_site_queue, schedule_retirement
from hosting.deployments.requests import DeploymentAborted, transition
from hosting.models import (
    ACTIVE_DEPLOYMENT_STATES,
    FINAL_DEPLOYMENT_STATES,
    Container,
    Deployment,
    DeploymentStatus,
    DesiredState,
    ObservedState,
    ResourceLimit,
    Site,
)
from hostpanel import crypto

log = logging.getLogger(__name__)
S = DeploymentStatus
SNAPSHOT_SITE_FIELDS = ("start_command", "internal_port", "health_check_path", "build_command")


class Heartbeat(threading.Thread):
    """Proves the worker is alive while a deployment runs; stops on abort."""

    def __init__(self, deployment_id):
        super().__init__(daemon=True)
        self.deployment_id = deployment_id
        self.stopped = threading.Event()

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stopped.wait(settings.DEPLOY_HEARTBEAT_SECONDS):
                Deployment.objects.filter(
                    pk=self.deployment_id, status__in=ACTIVE_DEPLOYMENT_STATES
                ).update(heartbeat_at=timezone.now())
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()


def _claim(deployment: Deployment, worker: str) -> bool:
    """Start it if it is queued, it is the site's oldest queued one, and none is running."""
    with transaction.atomic():
        site = (
            Site.objects.select_for_update(of=("self",))
            .select_related("organization")
            .get(pk=deployment.site_id)
        )
        if site.is_deleted or not site.organization.is_active:
            transition(
                deployment,
                S.QUEUED,
                S.CANCELLED,
                error="The site was deleted before the deployment started.",
            )
            return False
        running_or_older = Q(status__in=ACTIVE_DEPLOYMENT_STATES) | Q(
            status=S.QUEUED, number__lt=deployment.number
        )
        if site.deployments.exclude(pk=deployment.pk).filter(running_or_older).exists():
            return False
        now = timezone.now()
        return transition(
            deployment, S.QUEUED, S.CLONING, started_at=now, heartbeat_at=now, worker=worker[:100]
        )


def _advance(deployment: Deployment, expected: str, new: str, **fields) -> None:
    """The pipeline's next stage: a checkpoint and the transition in one conditional update."""
    if not transition(deployment, expected, new, unless_cancelled=True, **fields):
        raise DeploymentAborted(f"it left {expected} meanwhile (reaped or cancelled)")


def _checkpoint(deployment: Deployment) -> None:
    current = Deployment.objects.filter(pk=deployment.pk).values("status", "cancel_requested").get()
    if current["cancel_requested"]:
        raise DeploymentAborted("cancelled")
    if current["status"] != deployment.status:
        raise DeploymentAborted(f"moved to {current['status']} by someone else")


def _snapshot(site: Site) -> dict[str, Any]:
    """The configuration a deployment runs with: restored as a whole by a rollback."""
    limits = ResourceLimit.objects.get(site=site)
    return {
        "site": {name: getattr(site, name) for name in SNAPSHOT_SITE_FIELDS},
        "limits": {name: getattr(limits, name) for name in services.LIMIT_FIELDS},
        # Values as stored: secrets stay encrypted in the snapshot.
        "env": [
            {"key": v.key, "value": v.value, "is_secret": v.is_secret}
            for v in site.env_vars.order_by("key")
        ],
    }


def _apply_snapshot(site: Site, snapshot: dict[str, Any], actor: User | None) -> None:
    """Put a snapshot's configuration back on the site (inside the switch transaction),
    through the services: variables keep their ids, and every change is audited."""
    for name, value in snapshot["site"].items():
        setattr(site, name, value)
    site.save(update_fields=[*snapshot["site"], "updated_at"])
    limits = ResourceLimit.objects.get(site=site)
    changed = {k: v for k, v in snapshot["limits"].items() if getattr(limits, k) != v}
    if changed:
        services.update_limits(site, actor=actor, **changed)
    wanted = {v["key"]: v for v in snapshot["env"]}
    for var in list(site.env_vars.all()):
        old = wanted.pop(var.key, None)
        if old is None or (var.is_secret and not old["is_secret"]):
            services.delete_env(var, actor=actor)
            if old is not None:
                wanted[var.key] = old  # set again below, plain as it was
            continue
        value = crypto.decrypt(old["value"]) if old["is_secret"] else old["value"]
        if value != services.reveal_env_value(var) or old["is_secret"] != var.is_secret:
            services.update_env(var, actor=actor, value=value, is_secret=old["is_secret"])
    for key, old in wanted.items():
        value = crypto.decrypt(old["value"]) if old["is_secret"] else old["value"]
        services.set_env(site, actor=actor, key=key, value=value, is_secret=old["is_secret"])


def _wait_healthy(site: Site, container: Container, deployment: Deployment) -> None:
    """GET the health path of the new container until it answers < 400, or give up."""
    try:
        runtime.wait_healthy(
            site.host,
            container,
            site.health_check_path or "/",
            before_each=lambda: _checkpoint(deployment),
        )
    except runtime.Unhealthy as exc:
        raise builds.BuildFailed(str(exc)) from exc


def execute(deployment_id, worker: str = "") -> str:
    """Run one deployment to its end. Safe to call twice: only the claimer proceeds."""
    deployment = (
        Deployment.objects.select_related("organization", "site__organization", "site__host")
        .filter(pk=deployment_id)
        .first()
    )
    if deployment is None:
        return "gone"
    if not _claim(deployment, worker):
        return f"not started ({deployment.status})"
    site = deployment.site
    out = LogWriter(deployment)
    out.start()
    heartbeat = Heartbeat(deployment.pk)
    heartbeat.start()
    workdir = Workdir(deployment.pk)
    try:
        _run_pipeline(deployment, site, out, workdir)
        return deployment.status
    except DeploymentAborted as exc:
        out.line(f"==> stopped: {exc}")
        out.close()  # the whole log is written before the final status
        if deployment.status not in FINAL_DEPLOYMENT_STATES:
            transition(
                deployment, ACTIVE_DEPLOYMENT_STATES, S.CANCELLED, error="Cancelled while running."
            )
        return "cancelled"
    except builds.BuildCancelled as exc:
        out.line(f"==> {exc}")
        out.close()  # the whole log is written before the final status
        transition(deployment, ACTIVE_DEPLOYMENT_STATES, S.CANCELLED, error=str(exc))
        return "cancelled"
    except builds.BuildTimedOut as exc:
        out.line(f"==> {exc}")
        out.close()  # the whole log is written before the final status
        transition(deployment, ACTIVE_DEPLOYMENT_STATES, S.TIMED_OUT, error=str(exc))
        return "timed_out"
    except (
        git.CloneError,
        builds.BuildFailed,
        engine.HostUnavailable,
        engine.HostError,
        engine.SpecRejected,
        services.NoHostAvailable,
        ValidationError,
    ) as exc:
        out.line(f"==> failed: {exc}")
        out.close()  # the whole log is written before the final status
        transition(deployment, ACTIVE_DEPLOYMENT_STATES, S.FAILED, error=str(exc))
        return "failed"
    except Exception as exc:
        log.exception("deployment %s crashed", deployment.pk)
        out.line(f"==> failed: internal error ({exc.__class__.__name__})")
        out.close()  # the whole log is written before the final status
        transition(
            deployment,
            ACTIVE_DEPLOYMENT_STATES,
            S.FAILED,
            error=f"Internal error: {exc.__class__.__name__}",
        )
        return "failed"
    finally:
        heartbeat.stop()
        out.close()
        workdir.remove()
        deployment.refresh_from_db()
        if deployment.status != S.SUCCEEDED:
            remove_unswitched_containers(deployment)
        transaction.on_commit(lambda: kick_site_queue(site.pk))


def workdir_of(deployment_id) -> Path:
    """Where a deployment's clone lives; named by id so the reaper can find a dead one's."""
    return Path(tempfile.gettempdir()) / f"hp-deploy-{deployment_id}"


class Workdir:
    """A deployment's working directory: the clone in `source`, and the build's files."""

    def __init__(self, deployment_id):
        self.path = workdir_of(deployment_id)
        self.source = self.path / "src"
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(mode=0o700, parents=True)
        self._sweeper: subprocess.Popen | None = None

    def release_source(self) -> None:
        """The build has read the clone: delete it while the new container starts. A process
        of its own: shutil.rmtree in a thread would hold the GIL the pipeline needs."""
        self._sweeper = subprocess.Popen(  # noqa: S603
            ["rm", "-rf", "--", str(self.source)],  # noqa: S607
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def remove(self) -> None:
        if self._sweeper is not None:
            self._sweeper.wait()
        shutil.rmtree(self.path, ignore_errors=True)


def remove_unswitched_containers(deployment: Deployment) -> None:
    """A failed or cancelled deployment leaves nothing running: the old one keeps serving."""
    for container in Container.objects.filter(deployment=deployment).select_related("host"):
        try:
            engine.remove(container.host, container.docker_id)
        except (engine.HostUnavailable, engine.HostError):
            log.warning("could not remove container %s of failed deployment", container.docker_id)
            continue
        container.delete()


def _run_pipeline(deployment: Deployment, site: Site, out: LogWriter, workdir: Workdir):
    started = time.monotonic()
    rollback_of = deployment.rollback_of
    if rollback_of is not None:
        out.set_stage("cloning")
        out.line(f"==> rollback to deployment #{rollback_of.number} ({rollback_of.commit_hash})")
        _advance(
            deployment,
            S.CLONING,
            S.BUILDING,
            commit_hash=rollback_of.commit_hash,
            commit_message=rollback_of.commit_message,
            image_tag=rollback_of.image_tag,
            image_id=rollback_of.image_id,
        )
        snapshot, image = rollback_of.config_snapshot, {}
    else:
        out.set_stage("cloning")
        out.line(f"==> cloning {site.repository_url} ({deployment.branch})")
        checkout = git.clone(
            site.repository_url,
            deployment.branch,
            workdir.source,
            settings.DEPLOY_CLONE_TIMEOUT_SECONDS,
        )
        out.line(checkout.output)
        subject = checkout.message.splitlines()[0] if checkout.message else ""
        out.line(f"==> commit {checkout.commit}: {subject}")
        _advance(
            deployment,
            S.CLONING,
            S.BUILDING,
            commit_hash=checkout.commit,
            commit_message=checkout.message,
        )
        out.set_stage("building")
        context = workdir.source
        dockerfile = builds.dockerfile_for(site, context)
        tag = f"hostpanel/{site.organization.slug}-{site.slug}:{deployment.number}"
        out.line(f"==> building {tag} from {dockerfile}")
        build_started = time.monotonic()
        image_id = builds.build(
            site.host,
            context,
            dockerfile,
            tag,
            # No image labels: the classic builder makes each one a layer of its own (bench:
            # 110-180 ms a build); the tag already names the site and the deployment.
            labels={},
            on_output=out.write,
            should_cancel=lambda: Deployment.objects.filter(
                pk=deployment.pk, cancel_requested=True
            ).exists(),
            timeout=settings.DEPLOY_BUILD_TIMEOUT_SECONDS,
        )
        workdir.release_source()
        image = {
            "image_tag": tag,
            "image_id": image_id,
            "build_time_seconds": round(time.monotonic() - build_started, 3),
        }
        snapshot = _snapshot(site)
    _advance(deployment, S.BUILDING, S.STARTING, config_snapshot=snapshot, **image)
    out.set_stage("starting")

    # The new container runs beside the old one, with the snapshot's configuration; the
    # site's own rows change only at the switch, so a failure leaves them as they were.
    site = Site.objects.select_related("organization", "host").get(pk=site.pk)
    env = limits = None
    if rollback_of is not None:
        for name, value in snapshot["site"].items():
            setattr(site, name, value)
        limits = ResourceLimit(**snapshot["limits"])
        env = {
            v["key"]: crypto.decrypt(v["value"]) if v["is_secret"] else v["value"]
            for v in snapshot["env"]
        }
    new = runtime.run_container(
        site, image=deployment.image_tag, deployment=deployment, env=env, limits=limits
    )
    out.line(f"==> started {new.name} on port {new.port}; waiting for {site.health_check_path}")
    _wait_healthy(site, new, deployment)
    _advance(deployment, S.STARTING, S.HEALTHY)
    out.set_stage("switching")
    out.line("==> healthy; switching traffic and stopping the old container")
    out.stop()  # the switch below writes the log's last chunks itself, in its transaction

    with transaction.atomic():
        site = (
            Site.objects.select_for_update(of=("self",))
            .select_related("organization", "host")
            .get(pk=site.pk)
        )
        _checkpoint(deployment)
        if rollback_of is not None:
            _apply_snapshot(site, snapshot, deployment.triggered_by)
        # The old containers stop serving with this commit; they are stopped and removed
        # after it, by a task (retire_containers), so the deployment is done at the switch.
        replaced = site.containers.exclude(pk=new.pk).filter(retired_at__isnull=True)
        retired = list(replaced.values_list("pk", "name"))
        replaced.update(retired_at=timezone.now())
        site.deployed_image = deployment.image_tag
        site.desired_state = DesiredState.RUNNING
        site.observed_state = ObservedState.RUNNING
        site.needs_restart = False
        site.save(
            update_fields=[
                "deployed_image",
                "desired_state",
                "observed_state",
                "needs_restart",
                "updated_at",
            ]
        )
        out.line(f"==> deployment #{deployment.number} succeeded")
        out.flush()  # the whole log is written before the final status (writer stopped)
        transition(
            deployment,
            S.HEALTHY,
            S.SUCCEEDED,
            audit={"retired": [name for _pk, name in retired]},
            build_time_seconds=deployment.build_time_seconds
            or round(time.monotonic() - started, 3),
        )
        if retired:
            ids = [str(pk) for pk, _name in retired]
            # robust: a broker hiccup must not fail a committed switch; the reaper sweeps.
            transaction.on_commit(lambda: schedule_retirement(ids), robust=True)
    _route_to(site)
    return new


def _route_to(site: Site) -> None:
    """After the switch commits, the proxy sends visitors to the new container (the old
    one keeps answering what it already has while it drains). Should the proxy be
    unreachable, the periodic resync loads it, and the old container waits for that
    (upkeep.retire_containers)."""
    try:
        loaded = proxy.sync_host(site.host)
    except caddy.ProxyUnavailable as exc:
        log.warning("site %s: switched, but its proxy was not updated: %s", site.pk, exc)
        return
    if loaded.error:
        log.error("site %s: switched, but its proxy refused the config: %s", site.pk, loaded.error)
