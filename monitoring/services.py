"""Monitoring's state changes, each with its audit entry in the same transaction: a site's
health moving on after a round of checks, and a limit breach (with its policy applied)."""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import actions
from audit.services import record
from hosting import queue
from hosting import services as hosting_services
from hosting.models import DesiredState, Site
from monitoring.models import HealthCheck, HealthStatus, LimitBreach, SiteHealth

if TYPE_CHECKING:
    from hostpanel.probe import Result

log = logging.getLogger(__name__)

# LimitBreach.action_taken
BREACH_NOTIFIED = "notify"
BREACH_STOPPED = "stop"
BREACH_STOP_FAILED = "stop_error"


def record_health(checked: list[tuple[Site, Result]]) -> None:
    """Store the checks and move each site's health on, in one transaction."""
    threshold = int(settings.HEALTH_FAILURE_THRESHOLD)
    with transaction.atomic():
        HealthCheck.objects.bulk_create(
            [
                HealthCheck(
                    organization_id=site.organization_id,
                    site_id=site.pk,
                    timestamp=result.timestamp,
                    ok=result.ok,
                    status_code=result.status_code,
                    response_time_ms=result.response_time_ms,
                    error=result.error,
                )
                for site, result in checked
            ]
        )
        current = {
            health.site_id: health
            for health in SiteHealth.objects.select_for_update().filter(
                site_id__in=[site.pk for site, _ in checked]
            )
        }
        rows = []
        for site, result in checked:
            before = current.get(site.pk) or SiteHealth(site_id=site.pk)
            after = SiteHealth(
                site_id=site.pk,
                organization_id=site.organization_id,
                status=before.status,
                last_checked_at=result.timestamp,
                last_response_time_ms=result.response_time_ms,
            )
            if result.ok:
                after.consecutive_failures = 0
                after.status = HealthStatus.HEALTHY
                if before.status == HealthStatus.UNHEALTHY:
                    _audit_health(actions.SITE_RECOVERED, site, after, result)
            else:
                after.consecutive_failures = before.consecutive_failures + 1
                if (
                    after.consecutive_failures >= threshold
                    and before.status != HealthStatus.UNHEALTHY
                ):
                    after.status = HealthStatus.UNHEALTHY
                    _audit_health(actions.SITE_UNHEALTHY, site, after, result)
            rows.append(after)
        SiteHealth.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["site"],
            update_fields=[
                "organization",
                "status",
                "consecutive_failures",
                "last_checked_at",
                "last_response_time_ms",
            ],
        )


def _audit_health(action: str, site: Site, health: SiteHealth, result: Result) -> None:
    log.info("site %s: %s (%s)", site, action, result.error or result.status_code)
    record(
        action,
        organization=site.organization,
        target=site,
        changes={
            "status": health.status,
            "consecutive_failures": health.consecutive_failures,
            "status_code": result.status_code,
            "error": result.error,
            "url_path": site.health_check_path,
        },
    )


def record_breach(
    site: Site, limit: str, used: float, allowed: float, period: date, policy: str
) -> bool:
    """Apply the policy, then record the breach and its audit entry; False if already there."""
    action, error = BREACH_NOTIFIED, ""
    if policy == "stop":
        action = BREACH_STOPPED
        if site.desired_state != DesiredState.STOPPED:
            try:
                hosting_services.stop_site(site, actor=None)
                queue.send("reconcile_site", str(site.pk))
            except ValidationError as exc:  # the engine is the reconciler's: a stop only records
                action, error = BREACH_STOP_FAILED, str(exc)[:500]
                log.warning("limits: could not stop %s over its %s limit: %s", site, limit, exc)
    try:
        with transaction.atomic():
            LimitBreach.objects.create(
                organization_id=site.organization_id,
                site=site,
                limit=limit,
                period=period,
                measured=round(used, 3),
                allowed=allowed,
                action_taken=action,
            )
            changes = {
                "limit": limit,
                "measured": round(used, 3),
                "allowed": allowed,
                "unit": "MB",
                "period": period.strftime("%Y-%m"),
                "policy": policy,
                "action_taken": action,
            }
            if error:
                changes["error"] = error
            record(
                actions.SITE_LIMIT_EXCEEDED,
                actor=None,
                organization=site.organization,
                target=site,
                changes=changes,
            )
    except IntegrityError:
        return False  # another run recorded this breach first
    return True


def throttle_site(site: Site, until, served: int, allowed: int) -> bool:
    """The proxy answers the site's visitors 429 until `until` (one audit entry per
    throttle); False when a concurrent collector throttled it first."""
    with transaction.atomic():
        taken = Site.objects.filter(pk=site.pk).exclude(throttled_until__gt=timezone.now())
        if not taken.update(throttled_until=until):
            return False
        record(
            actions.SITE_THROTTLE,
            organization=site.organization,
            target=site,
            changes={
                "limit": "requests_per_minute",
                "measured": served,
                "allowed": allowed,
                "until": until.isoformat(),
            },
        )
    site.throttled_until = until
    return True
