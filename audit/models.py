"""The audit trail: one append-only row per state change."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from hostpanel.batch import delete_in_batches
from hostpanel.tenancy import TenantQuerySet


class ImmutableAuditLogError(Exception):
    """Audit rows are written once and never changed or deleted through the ORM."""


class AuditLogQuerySet(TenantQuerySet):
    def update(self, **kwargs):
        raise ImmutableAuditLogError("audit log rows cannot be updated")

    def delete(self):
        raise ImmutableAuditLogError("audit log rows cannot be deleted")

    delete.queryset_only = True  # type: ignore[attr-defined]

    def purge_before(self, cutoff, batch_size: int = 1000) -> int:
        """Retention: delete rows older than cutoff in short batches. The only way out."""
        return delete_in_batches(AuditLog, "timestamp", cutoff, batch_size)


class AuditLog(models.Model):
    """Who did what to which object, when and from where; before/after with secrets removed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    timestamp = models.DateTimeField(default=timezone.now, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_logs",
        help_text="Empty for platform events.",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(max_length=254, blank=True)
    token_id = models.UUIDField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=254, blank=True)
    changes = models.JSONField(default=dict, blank=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp"]
        indexes = [
            models.Index(fields=["organization", "-timestamp"], name="audit_org_time_idx"),
            models.Index(fields=["action", "-timestamp"], name="audit_action_time_idx"),
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
            models.Index(fields=["-timestamp"], name="audit_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableAuditLogError("audit log rows cannot be updated")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableAuditLogError("audit log rows cannot be deleted")
