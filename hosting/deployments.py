"""Deployments: git to a running site, zero downtime, and never stuck.

Lifecycle: queued → cloning → building → starting → healthy → succeeded, or failed /
cancelled / timed_out. Every transition is a conditional UPDATE from the state we expect,
timestamped in `transitions` and audited, so a cancel or the reaper racing the runner can
never be overwritten. One deployment per site runs at a time; later requests queue in
order (each is a commit someone asked for; silently superseding one would hide it). A
heartbeat thread proves the worker is alive; the reaper fails deployments whose worker died
and re-sends queued ones whose message was lost.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from accounts.models import User
from audit import actions
from audit.services import record
from hosting import builds, crypto, git, queue, runtime, services
from hosting import docker as engine
from hosting.models import (
    ACTIVE_DEPLOYMENT_STATES,
    FINAL_DEPLOYMENT_STATES,
    Container,
    Deployment,
    DeploymentLogChunk,
    DeploymentStatus,
    DeploymentTrigger,
    DesiredState,
    ObservedState,
    ResourceLimit,
    Site,
    WebhookDelivery,
)

log = logging.getLogger(__name__)
S = DeploymentStatus
SNAPSHOT_SITE_FIELDS = ("start_command", "internal_port", "health_check_path", "build_command")


class DeploymentAborted(Exception):
    """The deployment was cancelled or reaped while this worker ran it."""


# --- requests ------------------------------------------------------------------------------


def request_deployment(
    site: Site,
    *,
    actor: User | None,
    trigger: str,
    token_id: str | None = None,
    branch: str = "",
    rollback_of: Deployment | None = None,
    reuse_queued: bool = False,
) -> Deployment:
    """Queue a deployment; the worker picks it up after the transaction commits.

    `reuse_queued`: a request identical to one still queued returns that one (a second
    click on Deploy); webhooks and scripts that mean a second build leave it off."""
    if site.is_deleted:
        raise ValidationError({"site": "This site has been deleted."})
    if not site.organization.is_active:
        raise ValidationError({"site": "The site's organization is deactivated."})
    if rollback_of is None and not site.repository_url:
        raise ValidationError({"repository_url": "Set the site's repository URL first."})
    branch = branch or site.branch
    if rollback_of is None:
        try:
            git.check_url(site.repository_url)
        except git.CloneError as exc:
            raise ValidationError({"repository_url": str(exc)}) from None
        try:
            git.check_branch(branch)
        except git.CloneError as exc:
            raise ValidationError({"branch": str(exc)}) from None
    with transaction.atomic():
        site = (
            Site.objects.select_for_update(of=("self",))
            .select_related("organization")
            .get(pk=site.pk)
        )
        # A second click on Deploy while the same deployment waits in the queue: that one.
        queued = site.deployments.filter(
            status=S.QUEUED,
            branch=rollback_of.branch if rollback_of else branch,
            rollback_of=rollback_of,
        ).first()
        if reuse_queued and queued is not None:
            return queued
        number = (site.deployments.aggregate(n=Max("number"))["n"] or 0) + 1
        deployment = Deployment.objects.create(
            organization=site.organization,
            site=site,
            number=number,
            trigger=trigger,
            triggered_by=actor if actor is not None and actor.is_authenticated else None,
            token_id=token_id,
            branch=rollback_of.branch if rollback_of else branch,
            rollback_of=rollback_of,
            transitions=[{"status": S.QUEUED, "at": timezone.now().isoformat()}],
        )
        record(
            actions.DEPLOYMENT_CREATE,
            actor=actor,
            organization=site.organization,
            target=deployment,
            changes={
                "trigger": trigger,
                "branch": deployment.branch,
                "rollback_of": str(rollback_of.pk) if rollback_of else None,
            },
        )
        transaction.on_commit(lambda: _enqueue(deployment.pk))
    return deployment


def request_rollback(target: Deployment, *, actor: User | None, token_id=None) -> Deployment:
    """Redeploy an earlier success: its image and its configuration, as a new deployment."""
    if target.status != S.SUCCEEDED or not target.image_tag or not target.config_snapshot:
        raise ValidationError(
            {"deployment": "Only a succeeded deployment with a kept image can be rolled back to."}
        )
    return request_deployment(
        target.site,
        actor=actor,
        trigger=DeploymentTrigger.ROLLBACK,
        token_id=token_id,
        rollback_of=target,
    )


def _enqueue(deployment_id) -> None:
    queue.send("run_deployment", str(deployment_id))


def cancel(deployment: Deployment, *, actor: User | None) -> Deployment:
    """Cancel in any state: a queued one at once, a running one at its next checkpoint."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if deployment.is_final:
            raise ValidationError(
                {"deployment": f"This deployment has already ended ({deployment.status})."}
            )
        record(
            actions.DEPLOYMENT_CANCEL,
            actor=actor,
            organization=deployment.organization,
            target=deployment,
            changes={"status": deployment.status},
        )
        if deployment.status == S.QUEUED:
            transition(deployment, S.QUEUED, S.CANCELLED, error="Cancelled before it started.")
        else:
            Deployment.objects.filter(pk=deployment.pk).update(cancel_requested=True)
    deployment.refresh_from_db()
    if deployment.status == S.CANCELLED:
        transaction.on_commit(lambda: kick_site_queue(deployment.site_id))
    return deployment


# --- state changes ---------------------------------------------------------------------------


def transition(
    deployment: Deployment,
    expected,
    new: str,
    *,
    error: str = "",
    audit: dict[str, Any] | None = None,
    unless_cancelled: bool = False,
    **fields,
) -> bool:
    """Move from `expected` (a state or tuple of states) to `new`, if still there. Audited,
    with `audit` added to the entry's changes. `unless_cancelled`: a cancel requested
    meanwhile raises DeploymentAborted instead."""
    expected = (expected,) if isinstance(expected, str) else tuple(expected)
    now = timezone.now()
    with transaction.atomic():
        row = (
            Deployment.objects.select_for_update()
            .filter(pk=deployment.pk)
            .values("status", "transitions", "cancel_requested")
            .get()
        )
        if unless_cancelled and row["cancel_requested"]:
            raise DeploymentAborted("cancelled")
        if row["status"] not in expected:
            return False
        values = {
            "status": new,
            "transitions": [*row["transitions"], {"status": new, "at": now.isoformat()}],
            "updated_at": now,
            **fields,
        }
        if error:
            values["error"] = error[:5000]
        if new in FINAL_DEPLOYMENT_STATES:
            values["finished_at"] = now
        Deployment.objects.filter(pk=deployment.pk).update(**values)
        for name, value in values.items():  # the caller's object keeps its cached relations
            setattr(deployment, name, value)
        record(
            actions.DEPLOYMENT_FINISH
            if new in FINAL_DEPLOYMENT_STATES
            else actions.DEPLOYMENT_PROGRESS,
            organization=deployment.organization,
            target=deployment,
            changes={
                "status": {
                    "before": expected[0] if len(expected) == 1 else str(list(expected)),
                    "after": new,
                },
                **({"error": error[:500]} if error else {}),
                **(audit or {}),
            },
        )
    return True


# --- logs -------------------------------------------------------------------------------------


class LogWriter:
    """Buffers output and writes it as chunks; keeps at most DEPLOY_LOG_MAX_BYTES, the tail."""

    def __init__(self, deployment: Deployment):
        self.deployment = deployment
        self.stage = "queued"
        self.buffer: list[str] = []
        self.buffered = 0
        self.last_flush = time.monotonic()
        self.lock = threading.Lock()
        # Offsets are taken when text leaves the buffer, so chunks written by two threads
        # (the autoflush and the pipeline) keep the order the text was produced in.
        self.next_offset = Deployment.objects.values_list("log_size", flat=True).get(
            pk=deployment.pk
        )
        self.unwritten: list[tuple[int, str, str]] = []

    def start_autoflush(self, every: float = 0.5) -> None:
        """Write buffered output out even when no more comes (a long quiet build step)."""
        self._stop = threading.Event()

        def loop():
            from django.db import connection

            try:
                while not self._stop.wait(every):
                    try:
                        self.flush()
                    except Exception:  # kept in the buffer; the next tick tries again
                        log.warning("deployment log flush failed", exc_info=True)
            finally:
                connection.close()

        self._flusher = threading.Thread(target=loop, daemon=True)
        self._flusher.start()

    def stop_autoflush(self) -> None:
        if getattr(self, "_flusher", None) is not None:
            self._stop.set()
            self._flusher.join(timeout=10)

    def close(self) -> None:
        """Write everything out, from this thread only: a chunk the autoflush thread was
        still writing could otherwise land after the final status a reader stops at."""
        self.stop_autoflush()
        self.flush()

    def write(self, text: str) -> None:
        with self.lock:
            self.buffer.append(text)
            self.buffered += len(text)
            due = self.buffered >= 4096 or time.monotonic() - self.last_flush > 0.5
        if due:
            self.flush()

    def set_stage(self, stage: str) -> None:
        """Output so far belongs to the previous stage: it becomes a chunk under that name,
        written with the next flush (no database write of its own)."""
        with self.lock:
            self._cut()
            self.stage = stage

    def line(self, text: str) -> None:
        self.write(text.rstrip("\n") + "\n")

    def _cut(self) -> None:
        """The buffer becomes a chunk at the next offset (called with the lock held)."""
        if self.buffer:
            text = "".join(self.buffer)
            self.unwritten.append((self.next_offset, self.stage, text))
            self.next_offset += len(text.encode())
            self.buffer, self.buffered = [], 0

    def flush(self) -> None:
        # The database write happens outside the lock: a writer waiting for SQLite's lock
        # must never block the thread that holds it (the switch logs inside its transaction).
        with self.lock:
            self.last_flush = time.monotonic()
            self._cut()
            pending, self.unwritten = self.unwritten, []
        if not pending:
            return
        try:
            append_chunks(self.deployment, pending)
        except Exception:
            with self.lock:  # not lost: written with the next flush
                self.unwritten = pending + self.unwritten
            raise


def append_log(deployment: Deployment, stage: str, text: str, offset: int | None = None) -> None:
    """Store a chunk at `offset` (by default the end of the log) and keep the log bounded."""
    with transaction.atomic():
        if offset is None:
            offset = (
                Deployment.objects.select_for_update()
                .values_list("log_size", flat=True)
                .get(pk=deployment.pk)
            )
        append_chunks(deployment, [(offset, stage, text)])


def append_chunks(deployment: Deployment, chunks: list[tuple[int, str, str]]) -> None:
    """Store (offset, stage, text) chunks, in order, in one transaction; keep the log bounded."""
    sizes = [len(text.encode()) for _offset, _stage, text in chunks]
    with transaction.atomic():
        DeploymentLogChunk.objects.bulk_create(
            DeploymentLogChunk(deployment_id=deployment.pk, offset=offset, stage=stage, text=text)
            for offset, stage, text in chunks
        )
        Deployment.objects.filter(pk=deployment.pk).update(log_size=F("log_size") + sum(sizes))
        keep_from = chunks[-1][0] + sizes[-1] - settings.DEPLOY_LOG_MAX_BYTES
        if keep_from > 0:
            # Bounded: drop the oldest chunks that end before the kept tail starts.
            old = DeploymentLogChunk.objects.filter(
                deployment_id=deployment.pk, offset__lt=keep_from
            ).order_by("offset")
            ids = list(old.values_list("pk", "offset", "text"))
            doomed = [pk for pk, start, body in ids if start + len(body.encode()) <= keep_from]
            DeploymentLogChunk.objects.filter(pk__in=doomed).delete()


def read_log(deployment: Deployment, after: int = -1) -> dict[str, Any]:
    """Chunks starting after byte `after`, for polling; `truncated` when the head was trimmed."""
    chunks = list(
        DeploymentLogChunk.objects.filter(deployment=deployment, offset__gt=after)
        .order_by("offset")
        .values("offset", "stage", "text")
    )
    first = DeploymentLogChunk.objects.filter(deployment=deployment).order_by("offset").first()
    return {
        "chunks": chunks,
        "next_after": chunks[-1]["offset"] if chunks else after,
        "truncated_before": first.offset if first is not None and first.offset > 0 else 0,
    }


# --- the pipeline ---------------------------------------------------------------------------


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
    url = f"http://{site.host.address}:{container.port}{site.health_check_path or '/'}"
    deadline = time.monotonic() + settings.DEPLOY_HEALTH_TIMEOUT_SECONDS
    last = "no answer"
    pause = 0.01  # most apps listen within a few hundred ms: poll fast, then back off
    next_state_check = 0.0
    while time.monotonic() < deadline:
        _checkpoint(deployment)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 400:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        if time.monotonic() >= next_state_check:  # a crashed app fails at once, not at the deadline
            next_state_check = time.monotonic() + 0.25
            state = engine.inspect(site.host, container.docker_id)["State"]
            if state["Status"] != "running" or state.get("Restarting"):
                output = engine.container_logs(site.host, container.docker_id)
                raise builds.BuildFailed(
                    f"The new container stopped before it was healthy (exit code "
                    f"{state.get('ExitCode')}; {last}). Its output:\n{output}"
                )
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    raise builds.BuildFailed(
        f"The health check {url} failed for {settings.DEPLOY_HEALTH_TIMEOUT_SECONDS}s: {last}."
    )


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
    out.start_autoflush()
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
            _remove_unswitched_containers(deployment)
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


def _remove_unswitched_containers(deployment: Deployment) -> None:
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
    out.stop_autoflush()  # the switch below writes the log's last chunks itself

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
        out.flush()  # the whole log is written before the final status (autoflush stopped)
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
            transaction.on_commit(lambda: _schedule_retirement(ids), robust=True)
    return new


def _schedule_retirement(container_ids: list[str]) -> None:
    """Retire the replaced containers once requests already sent to them have finished."""
    queue.send("retire_containers", container_ids, countdown=settings.DEPLOY_DRAIN_SECONDS)


def retire_containers(container_ids) -> int:
    """Stop replaced containers gracefully (SIGTERM, DEPLOY_STOP_TIMEOUT_SECONDS to exit,
    then SIGKILL) and remove them. Idempotent; an unreachable host is left to the reaper."""
    retired = 0
    containers = Container.objects.filter(pk__in=container_ids, retired_at__isnull=False)
    for container in containers.select_related("host", "site__organization"):
        try:
            engine.stop_and_remove(
                container.host, container.docker_id, timeout=settings.DEPLOY_STOP_TIMEOUT_SECONDS
            )
        except (engine.HostUnavailable, engine.HostError, engine.SpecRejected) as exc:
            log.warning("replaced container %s not removed: %s", container.docker_id, exc)
            continue
        with transaction.atomic():
            deleted, _ = Container.objects.filter(pk=container.pk).delete()
            if deleted and container.site is not None:
                record(
                    actions.CONTAINER_RETIRE,
                    organization=container.site.organization,
                    target=container.site,
                    changes={
                        "container": container.name,
                        "docker_id": container.docker_id[:12],
                        "retired_at": container.retired_at.isoformat(),
                    },
                )
        retired += deleted
    return retired


# --- the queue, the reaper, old logs -------------------------------------------------------


def kick_site_queue(site_id) -> None:
    """Send the site's oldest queued deployment to a worker (when none is running)."""
    nxt = Deployment.objects.filter(site_id=site_id, status=S.QUEUED).order_by("number").first()
    if (
        nxt is not None
        and not Deployment.objects.filter(
            site_id=site_id, status__in=ACTIVE_DEPLOYMENT_STATES
        ).exists()
    ):
        _enqueue(nxt.pk)


def reap(now=None) -> dict[str, int]:
    """Fail running deployments whose worker stopped beating; re-send forgotten queued ones."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.DEPLOY_STALE_SECONDS)
    reaped = 0
    for deployment in Deployment.objects.filter(
        status__in=ACTIVE_DEPLOYMENT_STATES, heartbeat_at__lt=stale
    ):
        if transition(
            deployment,
            ACTIVE_DEPLOYMENT_STATES,
            S.FAILED,
            error="The worker running this deployment stopped responding.",
        ):
            _remove_unswitched_containers(deployment)
            shutil.rmtree(workdir_of(deployment.pk), ignore_errors=True)  # if it ran here
            reaped += 1
    kicked = 0
    waiting = (
        Deployment.objects.filter(status=S.QUEUED, created_at__lt=stale)
        .values_list("site_id", flat=True)
        .distinct()
    )
    for site_id in set(waiting):
        kick_site_queue(site_id)
        kicked += 1
    # Replaced containers whose retire task was lost (broker down, worker killed).
    overdue = now - timedelta(
        seconds=settings.DEPLOY_DRAIN_SECONDS + settings.DEPLOY_STOP_TIMEOUT_SECONDS + 60
    )
    leftovers = list(Container.objects.filter(retired_at__lt=overdue).values_list("pk", flat=True))
    swept = retire_containers(leftovers) if leftovers else 0
    return {"reaped": reaped, "kicked": kicked, "retired": swept}


def trim_old_logs(now=None) -> int:
    """Seed 002: build logs of deployments finished over DEPLOY_LOG_RETENTION_DAYS ago go;
    the last chunk (the tail, where the verdict is) is kept."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DEPLOY_LOG_RETENTION_DAYS)
    trimmed = 0
    for deployment in Deployment.objects.filter(
        finished_at__lt=cutoff, log_archived_at__isnull=True
    ):
        last = deployment.chunks.order_by("-offset").values_list("pk", flat=True).first()
        with transaction.atomic():
            deployment.chunks.exclude(pk=last).delete()
            Deployment.objects.filter(pk=deployment.pk).update(log_archived_at=now)
        trimmed += 1
    return trimmed


def purge_webhook_deliveries(now=None) -> int:
    """Delivery ids are kept as long as a replay could matter (DEPLOY_LOG_RETENTION_DAYS)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DEPLOY_LOG_RETENTION_DAYS)
    deleted, _ = WebhookDelivery.objects.filter(received_at__lt=cutoff).delete()
    return deleted
