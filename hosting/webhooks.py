"""Git webhooks: a signed push to a site's branch queues a deployment; nothing else deploys.

Each site has its own webhook id (in the URL) and its own secret (stored encrypted, shown
once when set). Two signature schemes are accepted, both HMAC-SHA256 with the site's secret:

- GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body, delivery id in
  `X-GitHub-Delivery`, event in `X-GitHub-Event` (`ping` or `push`).
- Generic: `X-Hostpanel-Signature: sha256=<hex>` over `"{timestamp}.{raw body}"`, where the
  timestamp (unix seconds) is sent in `X-Hostpanel-Timestamp` and must be within 5 minutes
  of the server's clock; delivery id in `X-Hostpanel-Delivery`; optional
  `X-Hostpanel-Event` (`push`, the default, or `ping`).

Replay protection: a delivery is remembered per site by its delivery id and by its
signature (the delivery id header is not signed, so a captured request sent again under a
new id is still caught). Remembered deliveries are purged after DEPLOY_LOG_RETENTION_DAYS,
so a GitHub-style push (no signed timestamp) whose signed `repository.pushed_at` is older
than that is refused as a possible replay. A delivery refused for its content (another
branch, bad JSON) is not remembered, so it can be sent again once the site is fixed. Bad or
missing signatures are audited as `webhook.rejected` with the reason only: never the body or
the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qs

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from audit import actions
from audit.services import record
from hosting import deployments
from hosting.models import Deployment, DeploymentTrigger, Site, WebhookDelivery
from hostpanel import crypto

MAX_BODY_BYTES = 1024 * 1024
TIMESTAMP_TOLERANCE_SECONDS = 5 * 60
SIGNATURE_PREFIX = "sha256="
GITHUB_SIGNATURE = "X-Hub-Signature-256"
GITHUB_DELIVERY = "X-GitHub-Delivery"
GITHUB_EVENT = "X-GitHub-Event"
GENERIC_SIGNATURE = "X-Hostpanel-Signature"
GENERIC_TIMESTAMP = "X-Hostpanel-Timestamp"
GENERIC_DELIVERY = "X-Hostpanel-Delivery"
GENERIC_EVENT = "X-Hostpanel-Event"
_MAX_DELIVERY_ID = 100


class WebhookRefused(Exception):
    """A delivery is refused; `api_status` and `api_code` make it a JSON error response."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.api_status = status
        self.api_code = code


class _Replayed(Exception):
    pass


class _Stale(Exception):
    pass


def replay_window_seconds() -> int:
    """How old a GitHub-style push may be: deliveries are remembered (and so caught when sent
    again) for DEPLOY_LOG_RETENTION_DAYS; a day is kept as margin for clocks and purges."""
    return max(1, settings.DEPLOY_LOG_RETENTION_DAYS - 1) * 86400


def _pushed_before_window(payload: Any, now: float) -> bool:
    """GitHub signs no timestamp, but its push payloads carry `repository.pushed_at` (unix
    seconds) inside the signed body: a push older than the window may be a replay of a
    delivery whose id was already purged. Payloads without it cannot be judged."""
    repository = payload.get("repository") if isinstance(payload, dict) else None
    pushed_at = repository.get("pushed_at") if isinstance(repository, dict) else None
    if isinstance(pushed_at, bool) or not isinstance(pushed_at, int):
        return False
    return pushed_at < now - replay_window_seconds()


@dataclass(frozen=True)
class WebhookResult:
    status: int
    detail: str
    deployment: Deployment | None = None


# --- the secret -------------------------------------------------------------------------------


def rotate_webhook_secret(site: Site, actor: User | None) -> str:
    """Give the site a new webhook secret; returns it (the only time it is readable)."""
    if site.is_deleted:
        raise ValidationError({"site": "This site has been deleted."})
    raw = secrets.token_urlsafe(32)
    with transaction.atomic():
        locked = Site.objects.select_for_update(of=("self",)).get(pk=site.pk)
        replaced = bool(locked.webhook_secret)
        locked.webhook_secret = crypto.encrypt(raw)
        locked.save(update_fields=["webhook_secret", "updated_at"])
        record(
            actions.WEBHOOK_SECRET_ROTATE,
            actor=actor,
            organization=locked.organization,
            target=locked,
            changes={"replaced_previous": replaced},
        )
    site.webhook_secret = locked.webhook_secret
    return raw


def sign(secret: str, body: bytes, timestamp: int | str | None = None) -> str:
    """The signature header value for `body` (generic scheme when a timestamp is given)."""
    message = body if timestamp is None else f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_PREFIX}{digest}"


# --- receiving a delivery ---------------------------------------------------------------------


def receive(webhook_id, *, body: bytes, headers: Mapping[str, str], now=None) -> WebhookResult:
    """Verify a delivery for the site with this webhook id and act on it.

    Raises WebhookRefused with the HTTP status to answer; returns what was done otherwise.
    """
    site = (
        Site.objects.alive()
        .filter(webhook_id=webhook_id, organization__is_active=True)
        .select_related("organization", "host")
        .first()
    )
    if site is None:
        raise WebhookRefused(404, "not_found", "No site has this webhook.")
    if not site.webhook_secret:
        raise WebhookRefused(403, "webhook_not_configured", "webhook not configured")
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRefused(413, "too_large", f"The body is over {MAX_BODY_BYTES} bytes.")

    signature, event = _verify(site, body, headers, now=now)
    delivery_id = (headers.get(GITHUB_DELIVERY) or headers.get(GENERIC_DELIVERY) or "").strip()
    if not delivery_id:
        raise WebhookRefused(
            400,
            "missing_delivery",
            f"A delivery id is required ({GITHUB_DELIVERY} or {GENERIC_DELIVERY}).",
        )
    if len(delivery_id) > _MAX_DELIVERY_ID:
        raise WebhookRefused(400, "invalid_delivery", "The delivery id is too long.")

    try:
        with transaction.atomic():
            # Remembered with the outcome: a refusal below rolls this back as well.
            if not _remember(site, (delivery_id, f"sig:{signature}")):
                raise _Replayed
            if event == "ping":
                return WebhookResult(200, "pong")
            if event != "push":
                raise WebhookRefused(
                    422, "event_not_deployed", f"Only push events deploy; {event!r} was ignored."
                )
            payload = _payload(body, headers)
            if headers.get(GITHUB_SIGNATURE) and _pushed_before_window(
                payload, time.time() if now is None else now
            ):
                raise _Stale
            deployment = handle_push(site, payload)
    except _Replayed:
        _reject(site, "replayed delivery", delivery_id=delivery_id)
        raise WebhookRefused(409, "replayed", "This delivery was already received.") from None
    except _Stale:
        _reject(site, "push older than the replay window", delivery_id=delivery_id)
        raise WebhookRefused(
            409,
            "stale_push",
            f"This push is over {replay_window_seconds() // 86400} days old: refused as a "
            "possible replay.",
        ) from None
    return WebhookResult(202, "deployment queued", deployment)


def handle_push(site: Site, payload: Any) -> Deployment:
    """Queue a deployment for a push to the site's branch; refuse anything else (422)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("ref"), str):
        raise WebhookRefused(400, "invalid_payload", "The payload has no 'ref' string.")
    ref = payload["ref"]
    wanted = f"refs/heads/{site.branch}"
    if ref.startswith("refs/tags/"):
        raise WebhookRefused(
            422, "not_deployed", f"Tags are not deployed ({ref}); this site deploys {wanted}."
        )
    if ref != wanted:
        raise WebhookRefused(
            422, "not_deployed", f"Pushes to {ref} are not deployed; this site deploys {wanted}."
        )
    if payload.get("deleted") is True:
        raise WebhookRefused(422, "not_deployed", f"{ref} was deleted; nothing to deploy.")
    try:
        return deployments.request_deployment(
            site, actor=None, trigger=DeploymentTrigger.WEBHOOK, branch=site.branch
        )
    except ValidationError as exc:
        raise WebhookRefused(422, "not_deployable", " ".join(exc.messages)) from None


def _verify(site: Site, body: bytes, headers: Mapping[str, str], *, now=None) -> tuple[str, str]:
    """Check the signature; returns (signature hex, event). Failures are audited, 401."""
    github, generic = headers.get(GITHUB_SIGNATURE), headers.get(GENERIC_SIGNATURE)
    if github:
        given, timestamp = github, None
        event = (headers.get(GITHUB_EVENT) or "push").strip().lower()
    elif generic:
        given, timestamp = generic, (headers.get(GENERIC_TIMESTAMP) or "").strip()
        event = (headers.get(GENERIC_EVENT) or "push").strip().lower()
        if not (timestamp.isascii() and timestamp.isdigit()):
            _unauthorized(site, f"missing or malformed {GENERIC_TIMESTAMP}")
        now = time.time() if now is None else now
        if abs(now - int(timestamp)) > TIMESTAMP_TOLERANCE_SECONDS:
            _unauthorized(site, "timestamp outside the 5 minute window")
    else:
        _unauthorized(site, "missing signature")
    given = given.strip()
    if not given.startswith(SIGNATURE_PREFIX):
        _unauthorized(site, "malformed signature")
    secret = crypto.decrypt(site.webhook_secret)
    expected = sign(secret, body, timestamp)
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        _unauthorized(site, "signature mismatch")
    return expected.removeprefix(SIGNATURE_PREFIX), event[:50]


def _unauthorized(site: Site, reason: str) -> NoReturn:
    _reject(site, reason)
    raise WebhookRefused(401, "bad_signature", f"Webhook signature refused: {reason}.")


def _reject(site: Site, reason: str, **extra: str) -> None:
    """Audit a refused delivery: the reason only, never the body, headers or secret."""
    with transaction.atomic():
        record(
            actions.WEBHOOK_REJECTED,
            organization=site.organization,
            target=site,
            changes={"reason": reason, **extra},
        )


def _remember(site: Site, keys: tuple[str, ...]) -> bool:
    """Store the delivery's keys; False when any of them was seen before for this site."""
    now = timezone.now()
    try:
        with transaction.atomic():
            WebhookDelivery.objects.bulk_create(
                WebhookDelivery(site=site, delivery_id=key, received_at=now) for key in keys
            )
    except IntegrityError:
        return False
    return True


def _payload(body: bytes, headers: Mapping[str, str]) -> Any:
    """The JSON payload; GitHub's form encoding (`payload=<json>`) is accepted too."""
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    try:
        text = body.decode()
        if content_type == "application/x-www-form-urlencoded":
            text = parse_qs(text).get("payload", [""])[0]
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookRefused(400, "invalid_payload", "The body is not valid JSON.") from None
