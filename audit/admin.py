"""The audit trail in the admin: searchable, filterable, and strictly read-only."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from audit import actions
from audit.models import AuditLog
from hostpanel.admin_kit import ReadOnlyAdmin


class ActionFilter(admin.SimpleListFilter):
    """Choices come from the action registry, so the filter costs no query."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return actions.choices()

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action=self.value())
        return queryset


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = (
        "timestamp",
        "action",
        "actor_label",
        "organization",
        "target_type",
        "target_label",
        "ip",
    )
    list_filter = (ActionFilter, "organization")
    date_hierarchy = "timestamp"
    search_fields = ("actor_label", "target_label", "request_id")
    list_select_related = ("organization",)
    fields = (
        "timestamp",
        "action",
        "actor",
        "actor_label",
        "organization",
        "target_type",
        "target_id",
        "target_label",
        "changes_pretty",
        "ip",
        "user_agent",
        "request_id",
        "token_id",
    )
    readonly_fields = fields

    @admin.display(description="changes")
    def changes_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.changes, indent=2, sort_keys=True))
