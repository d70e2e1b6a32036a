"""The project's own tables: what every app shares and no app owns."""

from __future__ import annotations

from django.db import models


class TaskClaim(models.Model):
    """A lease on a periodic job: taken with one conditional UPDATE so runs never overlap."""

    name = models.CharField(max_length=200, primary_key=True)
    owner = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField()
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveBigIntegerField(default=0, help_text="Times the claim was won.")

    def __str__(self) -> str:
        return self.name
