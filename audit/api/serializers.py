from rest_framework import serializers

from audit.models import AuditLog


class AuditLogSerializer(serializers.ModelSerializer):
    actor = serializers.UUIDField(source="actor_id", read_only=True, allow_null=True)

    class Meta:
        model = AuditLog
        fields = [
            "id",
            "timestamp",
            "action",
            "actor",
            "actor_label",
            "token_id",
            "ip",
            "user_agent",
            "request_id",
            "target_type",
            "target_id",
            "target_label",
            "changes",
        ]
        read_only_fields = fields
