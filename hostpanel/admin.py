from django.contrib import admin
from django.utils import timezone

from hostpanel.admin_kit import ReadOnlyAdmin
from hostpanel.models import TaskClaim


@admin.register(TaskClaim)
class TaskClaimAdmin(ReadOnlyAdmin):
    """Leases of periodic jobs: who holds which, until when, and when each last ran."""

    list_display = ("name", "held", "owner", "expires_at", "last_started_at", "last_finished_at")
    search_fields = ("name",)
    ordering = ("name",)

    @admin.display(boolean=True, description="held now")
    def held(self, obj):
        return obj.expires_at > timezone.now()
