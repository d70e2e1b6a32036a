"""The session engine (SESSION_ENGINE): Django's database sessions in accounts.UserSession,
whose extra columns are written from the session's data on each save, so listing a user's
sessions is one query and ending one is deleting its row; a request costs no extra query."""

from __future__ import annotations

import uuid

from django.contrib.auth import SESSION_KEY as USER_ID_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone
from django.utils.dateparse import parse_datetime

META_KEY = "_hp_meta"  # {"id", "ip", "ua", "second_factor", "created", "seen"}


class SessionStore(DatabaseSessionStore):
    @classmethod
    def get_model_class(cls):
        from accounts.models import UserSession

        return UserSession

    def create_model_instance(self, data):
        obj = super().create_model_instance(data)
        meta = data.get(META_KEY) or {}
        obj.user_id = data.get(USER_ID_KEY)
        if meta.get("id"):
            obj.public_id = uuid.UUID(meta["id"])
        obj.ip = meta.get("ip")
        obj.user_agent = (meta.get("ua") or "")[:300]
        obj.second_factor = meta.get("second_factor") or ""
        obj.created_at = parse_datetime(meta["created"]) if meta.get("created") else timezone.now()
        obj.last_seen_at = parse_datetime(meta["seen"]) if meta.get("seen") else obj.created_at
        return obj
