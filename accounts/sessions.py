"""Signed-in sessions, listed to their owner and revocable one by one.

A session is a row of accounts.UserSession (the session engine is accounts.session_store).
Signing in stamps the session with a public id, the address, the browser and how the
second step was passed; the middleware refreshes "last seen" at most every TOUCH_SECONDS.
Ending a session deletes its row: its next request is anonymous.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import User, UserSession
from accounts.session_store import META_KEY
from audit import actions
from audit.middleware import client_ip
from audit.services import record

TOUCH_SECONDS = 300


def stamp(request, second_factor: str = "") -> None:
    """Called on user_logged_in: what the owner will see of this session."""
    now = timezone.now().isoformat()
    request.session[META_KEY] = {
        "id": str(uuid.uuid4()),
        "ip": client_ip(request),
        "ua": request.META.get("HTTP_USER_AGENT", "")[:300],
        "second_factor": second_factor,
        "created": now,
        "seen": now,
    }


def current_id(request) -> str | None:
    """The public id of the request's session (None for a token or no session)."""
    session = getattr(request, "session", None)
    meta = session.get(META_KEY) if session is not None else None
    return meta.get("id") if meta else None


def active_for(user: User):
    return UserSession.objects.filter(user=user, expire_date__gt=timezone.now())


def revoke(user: User, public_id, *, actor: User) -> None:
    """Sign one of the user's sessions out, at once."""
    with transaction.atomic():
        rows = active_for(user).filter(public_id=public_id)
        row = rows.first()
        if row is None:
            raise ValidationError({"detail": "No such active session."})
        rows.delete()
        record(
            actions.USER_SESSION_REVOKE,
            actor=actor,
            target=user,
            changes={"session": {"id": str(public_id), "ip": row.ip, "since": str(row.created_at)}},
        )


def revoke_others(user: User, keep_id: str | None) -> int:
    """Delete every session of the user but KEEP_ID (inside the caller's transaction)."""
    rows = UserSession.objects.filter(user=user)
    if keep_id:
        rows = rows.exclude(public_id=keep_id)
    deleted, _ = rows.delete()
    return deleted


def purge_expired() -> int:
    deleted, _ = UserSession.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted


class SessionTouchMiddleware:
    """After AuthenticationMiddleware: keep a signed-in session's "last seen" (and address)
    fresh to TOUCH_SECONDS, by changing its data (saved with the response, no extra query)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            self._touch(request)
        return self.get_response(request)

    def _touch(self, request) -> None:
        meta = request.session.get(META_KEY)
        if not meta:  # signed in before sessions were stamped
            stamp(request)
            return
        seen = parse_datetime(meta.get("seen") or "")
        now = timezone.now()
        if seen is None or now - seen > timedelta(seconds=TOUCH_SECONDS):
            request.session[META_KEY] = {**meta, "seen": now.isoformat(), "ip": client_ip(request)}
