"""Which audit entries are notification events. The audit trail is the one record of what
happened, so a notification can neither be missed nor sent for something that was rolled
back: the entry's commit is what sends it."""

from __future__ import annotations

from django.db import transaction

from audit.models import AuditLog

DEPLOYMENT_SUCCEEDED = "deployment.succeeded"
DEPLOYMENT_FAILED = "deployment.failed"
SITE_UNHEALTHY = "site.unhealthy"
SITE_RECOVERED = "site.recovered"
LIMIT_BREACHED = "site.limit_breached"

EVENTS = {
    DEPLOYMENT_SUCCEEDED: "A deployment succeeded",
    DEPLOYMENT_FAILED: "A deployment failed",
    SITE_UNHEALTHY: "A site failed its health checks",
    SITE_RECOVERED: "A site passes its health checks again",
    LIMIT_BREACHED: "A site passed one of its limits",
}
# What a member gets by email until they choose: owners and admins hear of trouble.
DEFAULT_EMAIL_EVENTS = {
    "owner": [DEPLOYMENT_FAILED, SITE_UNHEALTHY, LIMIT_BREACHED],
    "admin": [DEPLOYMENT_FAILED, SITE_UNHEALTHY, LIMIT_BREACHED],
    "member": [],
    "viewer": [],
}
_BY_ACTION = {
    "site.unhealthy": SITE_UNHEALTHY,
    "site.recovered": SITE_RECOVERED,
    "site.limit_exceeded": LIMIT_BREACHED,
    "site.throttle": LIMIT_BREACHED,
}


def event_of(entry: AuditLog) -> str | None:
    if entry.action == "deployment.finish":
        status = (entry.changes or {}).get("status")
        if isinstance(status, dict):
            status = status.get("after")
        if status == "succeeded":
            return DEPLOYMENT_SUCCEEDED
        if status == "failed":
            return DEPLOYMENT_FAILED
        return None
    return _BY_ACTION.get(entry.action)


def on_audit_entry(entry: AuditLog) -> None:
    """Called by audit.record inside the change's transaction: an event of an organization
    is handed to the notify task once (and only if) that transaction commits."""
    if entry.organization_id is None or event_of(entry) is None:
        return
    from notifications import tasks

    transaction.on_commit(lambda: tasks.send_notify(entry.pk))
