from __future__ import annotations

from rest_framework import serializers

from notifications.events import EVENTS
from notifications.models import Delivery, Webhook

EVENT_CHOICES = sorted(EVENTS.items())


class MyNotificationsSerializer(serializers.Serializer):
    email_events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_CHOICES),
        help_text="The events you get by email from this organization.",
    )
    events = serializers.DictField(
        child=serializers.CharField(), read_only=True, help_text="Every event, described."
    )


class WebhookSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_CHOICES), allow_empty=False
    )

    class Meta:
        model = Webhook
        fields = ["id", "url", "events", "is_active", "created_at"]
        read_only_fields = ["id", "created_at"]


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Signs each delivery (X-Hostpanel-Signature). Shown once."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "event",
            "channel",
            "recipient",
            "status",
            "attempts",
            "response_status",
            "error",
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields
