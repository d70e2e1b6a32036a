"""`record` — the one function every service calls, inside its transaction, per change."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.db import models, transaction

from audit import actions, chain, context
from audit.models import AuditLog

REDACTED = "[redacted]"
# Called with each new entry, inside its transaction (notifications.events registers one).
after_record: list[Callable[[AuditLog], None]] = []
_SECRET_NAME = re.compile(r"password|secret|token|key_hash|code_hash|api_key|private", re.I)


def redact(data: Mapping[str, Any], secret_fields: Iterable[str] = ()) -> dict[str, Any]:
    """Replace values of secret-looking or named fields, recursively."""
    named = set(secret_fields)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if (key in named or _SECRET_NAME.search(key)) and not isinstance(value, bool):
            out[key] = REDACTED  # a flag such as is_secret cannot leak the secret itself
        elif isinstance(value, Mapping):
            out[key] = redact(value, named)
        elif isinstance(value, list | tuple):
            out[key] = [redact(v, named) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, models.Model):
        return str(value.pk)
    return str(value)


def snapshot(instance: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The named fields of an instance as JSON-safe values (FKs as their ids)."""
    data = {}
    for name in fields:
        field = instance._meta.get_field(name)
        attname = getattr(field, "attname", name)
        data[name] = _jsonable(getattr(instance, attname))
    return data


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields that changed, as {"before": {...}, "after": {...}}."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {
        "before": {k: before.get(k) for k in keys},
        "after": {k: after.get(k) for k in keys},
    }


def record(
    action: str,
    *,
    actor=None,
    organization=None,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    changes: Mapping[str, Any] | None = None,
    secret_fields: Iterable[str] = (),
) -> AuditLog:
    """Write one audit row. Call it inside the transaction that makes the change."""
    if not actions.is_registered(action):
        raise ValueError(f"unregistered audit action {action!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record must run inside the change's transaction")
    ctx = context.current()
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_label = target_label or str(target)
    is_user = actor is not None and getattr(actor, "is_authenticated", False)
    entry = AuditLog.objects.create(
        action=action,
        organization=organization,
        actor=actor if is_user else None,
        actor_label=(getattr(actor, "email", "") if is_user else "system")[:254],
        token_id=ctx.token_id,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        request_id=ctx.request_id,
        target_type=target_type[:64],
        target_id=target_id[:64],
        target_label=target_label[:254],
        changes=_jsonable(redact(changes or {}, secret_fields)),
    )
    for hook in after_record:
        hook(entry)
    chain.seal_after_commit()
    return entry


def record_imported(
    *,
    timestamp,
    actor=None,
    actor_label: str = "",
    organization=None,
    message: str,
    source: str,
    legacy_id: str,
) -> AuditLog:
    """An activity row of a legacy system, kept at its own time and marked as imported
    (action legacy.activity). It joins the hash chain when its transaction commits; no
    notification is sent for it (the after_record hooks are for what happens now)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record_imported must run inside the import's transaction")
    is_user = actor is not None and getattr(actor, "is_authenticated", False)
    entry = AuditLog.objects.create(
        timestamp=timestamp,
        action=actions.LEGACY_ACTIVITY,
        organization=organization,
        actor=actor if is_user else None,
        actor_label=(actor.email if is_user else actor_label or "legacy")[:254],
        target_type="legacy.activity",
        target_id=legacy_id[:64],
        target_label=message[:254],
        changes={"imported": True, "source": source, "legacy_id": legacy_id, "message": message},
    )
    chain.seal_after_commit()
    return entry
