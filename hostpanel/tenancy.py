"""The model bases every app builds on: timestamps, and the one tenant filter."""

from __future__ import annotations

from typing import Any, Self

from django.db import models
from django.utils import timezone


class TimeStampedModel(models.Model):
    """Creation and last-change times, for every model that has a lifecycle."""

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TenantQuerySet(models.QuerySet):
    """Rows owned by an organization. `for_user` is the one tenant filter every viewset and
    page starts from: rows of the active organizations the user belongs to, narrowed to the
    token's organization when the request came with an organization-bound token.

    `organization_path`: the lookup from the row to its organization ("" on Organization)."""

    organization_path = "organization"

    def for_user(self, user, token: Any = None) -> Self:
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        prefix = f"{self.organization_path}__" if self.organization_path else ""
        # One membership per (user, organization): the join adds no duplicate rows.
        rows = self.filter(**{f"{prefix}memberships__user": user, f"{prefix}is_active": True})
        if token is not None and token.organization_id is not None:
            rows = rows.filter(**{f"{prefix}pk": token.organization_id})
        return rows
