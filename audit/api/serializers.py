from rest_framework import serializers

from audit.models import AuditLog
from audit.sentences import sentence


class AuditLogSerializer(serializers.ModelSerializer):
    actor = serializers.UUIDField(source="actor_id", read_only=True, allow_null=True)
    summary = serializers.SerializerMethodField(help_text="The entry as a sentence.")

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
            "summary",
        ]
        read_only_fields = fields

    def get_summary(self, entry: AuditLog) -> str:
        return sentence(entry)
