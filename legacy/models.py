"""What the legacy import brought in: one row per legacy row, naming what it became here."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class LegacyRecord(models.Model):
    """A legacy row already handled by an import (created here, or matched to an existing
    row). A later run of the same source skips it, so importing twice changes nothing."""

    id = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=30)
    table = models.CharField(max_length=64)
    legacy_id = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["source", "table", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "table", "legacy_id"],
                name="legacy_legacyrecord_once",
                violation_error_message="This legacy row was imported already.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.table} #{self.legacy_id} -> {self.target_type}"
