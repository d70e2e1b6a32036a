"""The audit trail: one append-only row per state change."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

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
        """Retention: the chain's oldest rows, up to `cutoff` (audit.chain.purge_before)."""
        from audit import chain

        return chain.purge_before(cutoff, batch_size)

    def _seal(self, **chain_fields) -> int:
        """audit.chain only: set an unsealed row's place in the chain (the database allows
        this one UPDATE, on a row not sealed yet)."""
        return super().update(**chain_fields)


class AuditLog(models.Model):
    """Who did what to which object, when and from where; before/after with secrets removed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    timestamp = models.DateTimeField(default=timezone.now, editable=False)
    # No database constraint and nothing done on delete: a row never changes, even when its
    # organization or actor row is deleted (actor_label and target_label keep the names).
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="audit_logs",
        help_text="Empty for platform events.",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
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
    # The hash chain (audit/chain.py), set once when the row is sealed after its commit.
    sequence = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    row_hmac = models.CharField(max_length=64, blank=True, editable=False)

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


class AuditChain(models.Model):
    """The chain's head (one row): the last sealed sequence and HMAC, where the kept chain
    starts after retention, and the gate the retention purge opens for its DELETEs."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    sequence = models.BigIntegerField(default=0)
    last_hmac = models.CharField(max_length=64, blank=True)
    start_sequence = models.BigIntegerField(default=1)
    start_prev_hash = models.CharField(max_length=64, blank=True)
    purging = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "audit_chainhead"  # after audit_auditlog: a test flush empties the log first

    def __str__(self) -> str:
        return f"audit chain at {self.sequence}"
