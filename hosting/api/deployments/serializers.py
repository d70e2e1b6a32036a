"""Shapes of deployments, their logs and a site's webhook settings in the API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hosting.models import Deployment, DeploymentStatus

S = DeploymentStatus
# The stages a deployment walks through; `progress.index` is the position in this list.
PIPELINE = (S.QUEUED, S.CLONING, S.BUILDING, S.STARTING, S.HEALTHY, S.SUCCEEDED)


def progress_of(deployment: Deployment) -> dict:
    """{stage, index, total}: where the deployment is, or where it ended."""
    stage = deployment.status
    if stage not in PIPELINE:
        earlier = [t.get("status") for t in deployment.transitions or []]
        reached = [s for s in earlier if s in PIPELINE]
        stage = reached[-1] if reached else S.QUEUED
    return {"stage": stage, "index": PIPELINE.index(stage), "total": len(PIPELINE) - 1}


class DeploymentProgressSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=[str(s) for s in PIPELINE])
    index = serializers.IntegerField(help_text="0 while queued; `total` when succeeded.")
    total = serializers.IntegerField()


# `status` has one enum in the schema, on Deployment: another component with the same enum
# would make drf-spectacular name it with a hash (hosts have a `status` enum too).
STATUS_HELP = "A deployment status (see Deployment.status)."


class DeploymentTransitionSerializer(serializers.Serializer):
    status = serializers.CharField(help_text=STATUS_HELP)
    at = serializers.DateTimeField()


class DeploymentConfigSerializer(serializers.Serializer):
    site = serializers.DictField(help_text="Start command, port, image and the like.")
    limits = serializers.DictField()
    env = serializers.ListField(
        child=serializers.DictField(), help_text="Variables: key, is_secret (never values)."
    )


class DeploymentSerializer(serializers.ModelSerializer):
    triggered_by = serializers.SlugRelatedField(
        slug_field="email", read_only=True, help_text="Who asked (null for webhooks)."
    )
    rollback_of = serializers.PrimaryKeyRelatedField(
        read_only=True, help_text="The deployment this one rolls back to."
    )
    transitions = DeploymentTransitionSerializer(many=True, read_only=True)
    progress = serializers.SerializerMethodField()
    config = serializers.SerializerMethodField(
        help_text="What it ran with, which a rollback to it restores (null: not started)."
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "number",
            "status",
            "trigger",
            "triggered_by",
            "branch",
            "commit_hash",
            "commit_message",
            "image_tag",
            "build_time_seconds",
            "error",
            "cancel_requested",
            "transitions",
            "progress",
            "created_at",
            "started_at",
            "finished_at",
            "rollback_of",
            "log_size",
            "config",
        ]
        read_only_fields = fields

    @extend_schema_field(DeploymentConfigSerializer(allow_null=True))
    def get_config(self, deployment: Deployment) -> dict | None:
        snapshot = deployment.config_snapshot or {}
        if not snapshot:
            return None
        return {
            "site": snapshot.get("site") or {},
            "limits": snapshot.get("limits") or {},
            "env": [
                {"key": v.get("key"), "is_secret": bool(v.get("is_secret"))}
                for v in snapshot.get("env") or []
            ],
        }

    @extend_schema_field(DeploymentProgressSerializer)
    def get_progress(self, deployment: Deployment) -> dict:
        return progress_of(deployment)


class DeploymentCreateSerializer(serializers.Serializer):
    branch = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="Branch to deploy; the site's branch when left out.",
    )


class LogChunkSerializer(serializers.Serializer):
    offset = serializers.IntegerField(help_text="Byte offset of the chunk in the whole log.")
    stage = serializers.CharField()
    text = serializers.CharField()


class DeploymentLogSerializer(serializers.Serializer):
    chunks = LogChunkSerializer(many=True)
    next_after = serializers.IntegerField(help_text="Pass as `after` to get only newer output.")
    truncated_before = serializers.IntegerField(
        help_text="Output before this byte offset was dropped (logs keep their tail); 0: none."
    )
    status = serializers.CharField(help_text=STATUS_HELP)
    finished = serializers.BooleanField(help_text="The deployment ended; no more output comes.")
    log_size = serializers.IntegerField(help_text="Bytes written so far, dropped ones included.")


class LogQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=-1, required=False, default=-1)


class WebhookConfigSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Where the git host sends pushes.")
    webhook_id = serializers.UUIDField()
    branch = serializers.CharField(help_text="Pushes to this branch deploy.")
    has_secret = serializers.BooleanField(help_text="A secret is set (it is shown once, when set).")


class WebhookSecretSerializer(WebhookConfigSerializer):
    secret = serializers.CharField(help_text="The new secret. It is not shown again.")


class WebhookPongSerializer(serializers.Serializer):
    detail = serializers.CharField()
