"""Notification settings and delivery: members choose their email events, admins manage
the organization's webhooks (audited), and `deliver` sends one event to everyone who asked
for it, once per recipient."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Membership, Organization, User
from audit import actions
from audit.models import AuditLog
from audit.sentences import sentence
from audit.services import record
from hostpanel import crypto
from notifications.events import DEFAULT_EMAIL_EVENTS, EVENTS, event_of
from notifications.models import Delivery, DeliveryStatus, EmailSubscription, Webhook

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Hostpanel-Signature"
WEBHOOK_TIMEOUT_SECONDS = 5


def _check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise ValidationError({"events": f"Unknown events: {', '.join(unknown)}."})
    return sorted(set(events))


# --- members' email choices ---------------------------------------------------------------


def email_events(org: Organization, user: User, role: str) -> list[str]:
    row = EmailSubscription.objects.filter(organization=org, user=user).first()
    return list(row.events) if row is not None else list(DEFAULT_EMAIL_EVENTS.get(role, []))


def set_email_events(org: Organization, user: User, events: list[str]) -> list[str]:
    events = _check_events(events)
    with transaction.atomic():
        EmailSubscription.objects.update_or_create(
            organization=org, user=user, defaults={"events": events}
        )
        record(
            actions.NOTIFICATION_PREFERENCES,
            actor=user,
            organization=org,
            target=user,
            changes={"email_events": events},
        )
    return events


# --- webhooks ---------------------------------------------------------------------------------


def check_webhook_url(url: str) -> None:
    """http(s) only; and, unless NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE, a name that resolves to
    public addresses only: a tenant must not make the panel call its own network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"url": "Use an http:// or https:// URL."})
    if settings.NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise ValidationError({"url": f"{parts.hostname} does not resolve."}) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ValidationError(
                {"url": f"{parts.hostname} is a private address ({address}); not allowed."}
            )


def create_webhook(
    org: Organization, *, actor: User | None, url: str, events: list[str]
) -> tuple[Webhook, str]:
    """A webhook and its signing secret (shown once, stored encrypted)."""
    check_webhook_url(url)
    events = _check_events(events)
    if not events:
        raise ValidationError({"events": "Choose at least one event."})
    secret = "whsec_" + secrets.token_urlsafe(24)
    with transaction.atomic():
        hook = Webhook.objects.create(
            organization=org,
            url=url,
            events=events,
            secret_encrypted=crypto.encrypt(secret),
            created_by=actor,
        )
        record(
            actions.NOTIFICATION_WEBHOOK_CREATE,
            actor=actor,
            organization=org,
            target=hook,
            changes={"url": url, "events": events},
        )
    return hook, secret


def update_webhook(hook: Webhook, *, actor: User | None, **fields) -> Webhook:
    if "url" in fields:
        check_webhook_url(fields["url"])
    if "events" in fields:
        fields["events"] = _check_events(fields["events"])
    with transaction.atomic():
        before = {k: getattr(hook, k) for k in fields}
        for name, value in fields.items():
            setattr(hook, name, value)
        hook.save(update_fields=list(fields))
        record(
            actions.NOTIFICATION_WEBHOOK_UPDATE,
            actor=actor,
            organization=hook.organization,
            target=hook,
            changes={"before": before, "after": fields},
        )
    return hook


def delete_webhook(hook: Webhook, *, actor: User | None) -> None:
    with transaction.atomic():
        record(
            actions.NOTIFICATION_WEBHOOK_DELETE,
            actor=actor,
            organization=hook.organization,
            target=hook,
            changes={"url": hook.url},
        )
        hook.delete()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


# --- delivery ---------------------------------------------------------------------------------


def payload_of(entry: AuditLog, event: str) -> dict[str, Any]:
    return {
        "event": event,
        "summary": sentence(entry),
        "organization": entry.organization.slug,
        "target": {"type": entry.target_type, "id": entry.target_id, "label": entry.target_label},
        "at": entry.timestamp.isoformat(),
        "audit_id": str(entry.pk),
    }


def plan_deliveries(entry: AuditLog) -> list[Delivery]:
    """The deliveries one audit entry's event makes (made once: a second call for the same
    entry finds them and makes none)."""
    event = event_of(entry)
    org = entry.organization
    if event is None or org is None or not org.is_active:
        return []
    made = []
    members = Membership.objects.filter(organization=org, user__is_active=True).select_related(
        "user"
    )
    chosen = {row.user_id: row.events for row in EmailSubscription.objects.filter(organization=org)}
    recipients = [
        ("email", m.user.email, None)
        for m in members
        if event in chosen.get(m.user_id, DEFAULT_EMAIL_EVENTS.get(m.role, []))
    ]
    recipients += [
        ("webhook", hook.url, hook)
        for hook in Webhook.objects.filter(organization=org, is_active=True)
        if event in hook.events
    ]
    for channel, recipient, hook in recipients:
        try:
            with transaction.atomic():
                made.append(
                    Delivery.objects.create(
                        organization=org,
                        audit_id=entry.pk,
                        event=event,
                        channel=channel,
                        recipient=recipient,
                        webhook=hook,
                    )
                )
        except IntegrityError:
            continue  # planned by an earlier run of the same entry
    return made


def send(delivery: Delivery) -> bool:
    """Send one delivery; True when it went out. Failures are recorded on the row."""
    entry = AuditLog.objects.select_related("organization").get(pk=delivery.audit_id)
    payload = payload_of(entry, delivery.event)
    Delivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts + 1)
    try:
        if delivery.channel == "email":
            status = _send_email(delivery, payload)
        else:
            status = _post_webhook(delivery, payload)
    except (OSError, requests.RequestException, ValidationError) as exc:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, error=str(exc)[:2000]
        )
        return False
    ok = status is None or 200 <= status < 300
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENT if ok else DeliveryStatus.FAILED,
        response_status=status,
        error="" if ok else f"The webhook answered {status}.",
        sent_at=timezone.now() if ok else None,
    )
    return ok


def _send_email(delivery: Delivery, payload: dict[str, Any]) -> None:
    link = f"{settings.SITE_URL.rstrip('/')}/o/{payload['organization']}/audit/"
    send_mail(
        subject=f"[hostpanel] {EVENTS[delivery.event]}: {payload['target']['label']}",
        message=(
            f"{payload['summary']}\n\nWhen: {payload['at']}\nAudit log: {link}\n\n"
            "You get this because of your notification choices in the organization's "
            "settings; change them there."
        ),
        from_email=None,
        recipient_list=[delivery.recipient],
    )


def _post_webhook(delivery: Delivery, payload: dict[str, Any]) -> int:
    hook = delivery.webhook
    if hook is None:
        raise ValidationError("The webhook was deleted.")
    check_webhook_url(hook.url)  # its name may resolve elsewhere by now
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    response = requests.post(
        hook.url,
        data=body,
        timeout=WEBHOOK_TIMEOUT_SECONDS,
        allow_redirects=False,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "hostpanel-webhooks",
            "X-Hostpanel-Event": delivery.event,
            "X-Hostpanel-Delivery": str(delivery.pk),
            "X-Hostpanel-Timestamp": timestamp,
            SIGNATURE_HEADER: sign(crypto.decrypt(hook.secret_encrypted), timestamp, body),
        },
    )
    return response.status_code
