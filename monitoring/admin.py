"""Monitoring in the admin: samples, rollups, health, breaches and job leases, read-only.

These rows are written by the workers only; staff look (and filter), nobody edits here.
"""

from __future__ import annotations

from django.contrib import admin

from hostpanel.admin_kit import ReadOnlyAdmin
from monitoring.models import (
    DailyUsage,
    HealthCheck,
    HourlyUsage,
    LimitBreach,
    SiteHealth,
    UsageSample,
)

MB = float(2**20)


@admin.register(UsageSample)
class UsageSampleAdmin(ReadOnlyAdmin):
    list_display = ("site", "timestamp", "cpu_percent", "memory_mb", "bandwidth_kb", "pids")
    list_select_related = ("site__organization",)
    date_hierarchy = "timestamp"
    search_fields = ("site__slug", "organization__slug", "docker_id")
    list_filter = ("organization",)

    @admin.display(description="memory (MiB)", ordering="memory_bytes")
    def memory_mb(self, obj):
        return round(obj.memory_bytes / MB, 1)

    @admin.display(description="bandwidth (KiB)", ordering="bandwidth_bytes")
    def bandwidth_kb(self, obj):
        return round(obj.bandwidth_bytes / 1024, 1)


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnlyAdmin):
    list_display = (
        "site",
        "date",
        "avg_memory_mb",
        "max_memory_mb",
        "avg_cpu_percent",
        "max_cpu_percent",
        "total_bandwidth_mb",
        "uptime_seconds",
        "samples",
    )
    list_select_related = ("site__organization",)
    date_hierarchy = "date"
    search_fields = ("site__slug", "organization__slug")
    list_filter = ("organization",)


@admin.register(HourlyUsage)
class HourlyUsageAdmin(ReadOnlyAdmin):
    list_display = (
        "site",
        "hour",
        "avg_cpu_percent",
        "max_cpu_percent",
        "memory_mb",
        "bandwidth_kb",
        "samples",
    )
    list_select_related = ("site__organization",)
    date_hierarchy = "hour"
    search_fields = ("site__slug", "organization__slug")
    list_filter = ("organization",)

    @admin.display(description="memory (MiB)", ordering="avg_memory_bytes")
    def memory_mb(self, obj):
        return round(obj.avg_memory_bytes / MB, 1)

    @admin.display(description="bandwidth (KiB)", ordering="bandwidth_bytes")
    def bandwidth_kb(self, obj):
        return round(obj.bandwidth_bytes / 1024, 1)


@admin.register(HealthCheck)
class HealthCheckAdmin(ReadOnlyAdmin):
    list_display = ("site", "timestamp", "ok", "status_code", "response_time_ms", "error")
    list_select_related = ("site__organization",)
    date_hierarchy = "timestamp"
    list_filter = ("ok",)
    search_fields = ("site__slug", "organization__slug")


@admin.register(SiteHealth)
class SiteHealthAdmin(ReadOnlyAdmin):
    list_display = (
        "site",
        "status",
        "consecutive_failures",
        "last_checked_at",
        "last_response_time_ms",
    )
    list_select_related = ("site__organization",)
    list_filter = ("status",)
    search_fields = ("site__slug", "organization__slug")


@admin.register(LimitBreach)
class LimitBreachAdmin(ReadOnlyAdmin):
    list_display = ("site", "limit", "period", "measured", "allowed", "action_taken", "created_at")
    list_select_related = ("site__organization",)
    list_filter = ("limit", "action_taken")
    date_hierarchy = "created_at"
    search_fields = ("site__slug", "organization__slug")
