"""Notifications in the admin, read-only: tenants manage them in the console; staff look."""

from __future__ import annotations

from django.contrib import admin
from django.db import models

from hostpanel.admin_kit import ReadOnlyAdmin
from notifications.models import Delivery, EmailSubscription, Webhook


@admin.register(Webhook)
class WebhookAdmin(ReadOnlyAdmin):
    list_display = ("url", "organization", "is_active", "created_at")
    list_filter = ("is_active", "organization")
    search_fields = ("url", "organization__slug")
    exclude = ("secret_encrypted",)  # never shown, not even encrypted
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "organization", "event", "channel", "recipient", "status")
    list_filter = ("status", "channel", "event")
    search_fields = ("recipient", "organization__slug")
    date_hierarchy = "created_at"


@admin.register(EmailSubscription)
class EmailSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ("user", "organization", "events", "updated_at")
    search_fields = ("user__email", "organization__slug")
