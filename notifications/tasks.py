"""Celery tasks: an event's deliveries, and retries of failed webhook deliveries."""

from __future__ import annotations

from celery import current_app, shared_task

from audit.models import AuditLog
from hostpanel.retry import backoff
from notifications import services
from notifications.models import Delivery, DeliveryStatus

MAX_ATTEMPTS = 4


def send_notify(audit_id) -> None:
    """Hand an audit entry's event to a worker (called after its commit)."""
    current_app.send_task("notifications.tasks.notify", args=[str(audit_id)])


@shared_task(acks_late=True, ignore_result=True)
def notify(audit_id: str) -> int:
    """Plan and send the deliveries of one event; failed webhooks are retried later.
    Returns how many went out."""
    entry = AuditLog.objects.select_related("organization").filter(pk=audit_id).first()
    if entry is None:
        return 0
    sent = 0
    for delivery in services.plan_deliveries(entry):
        if services.send(delivery):
            sent += 1
        elif delivery.channel == "webhook":
            retry_delivery.apply_async(args=[str(delivery.pk)], countdown=backoff(0))
    return sent


@shared_task(acks_late=True, ignore_result=True)
def retry_delivery(delivery_id: str) -> str:
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status == DeliveryStatus.SENT:
        return "done"
    if services.send(delivery):
        return "sent"
    delivery.refresh_from_db(fields=["attempts"])
    if delivery.attempts < MAX_ATTEMPTS:
        retry_delivery.apply_async(args=[delivery_id], countdown=backoff(delivery.attempts))
        return "again"
    return "given up"
