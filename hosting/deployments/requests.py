"""Asking for deployments: request, rollback, cancel, and the one state transition every
part of a deployment's life goes through (a conditional UPDATE from the expected state,
timestamped and audited)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import User
from audit import actions
from audit.services import record
from hosting import git
from hosting.deployments.queue import enqueue, kick_site_queue
from hosting.models import (
    FINAL_DEPLOYMENT_STATES,
    Deployment,
    DeploymentStatus,
    DeploymentTrigger,
    Site,
)

S = DeploymentStatus


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
        if site.moving_to_id is not None:
            raise ValidationError(
                {"site": "The site is moving to another host; deploy once it has moved."}
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
        transaction.on_commit(lambda: enqueue(deployment.pk))
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
