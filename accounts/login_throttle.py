"""Refuse session logins after repeated failures, counted from the audit trail.

Counting audit rows (not a per-process cache) makes the limit hold across gunicorn workers
and machines, and the evidence is the same rows staff already read.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from audit import actions
from audit.models import AuditLog

# One address may serve a whole office behind NAT: give it more room than one account.
IP_FACTOR = 4


def login_blocked(email: str, ip: str | None) -> bool:
    since = timezone.now() - settings.LOGIN_FAILURE_WINDOW
    failures = AuditLog.objects.filter(action=actions.USER_LOGIN_FAILED, timestamp__gte=since)
    limit = settings.LOGIN_FAILURE_LIMIT
    email = (email or "").strip().lower()
    if email and failures.filter(target_label=email).count() >= limit:
        return True
    return bool(ip) and failures.filter(ip=ip).count() >= limit * IP_FACTOR
