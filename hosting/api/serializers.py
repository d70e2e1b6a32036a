from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Scope
from hosting.models import (
    Container,
    DockerHost,
    Domain,
    EnvironmentVariable,
    OrganizationQuota,
    PortForward,
    ResourceLimit,
    ShareLink,
    Site,
    SiteTemplate,
)
from hosting.services import LIMIT_FIELDS, QUOTA_FIELDS, reveal_env_value
from hostpanel.api.listing import FastListSerializer
from hostpanel.api.permissions import request_token

MASK = "********"


class ResourceLimitSerializer(serializers.ModelSerializer):
    class Meta:
        model = ResourceLimit
        fields = [*LIMIT_FIELDS, "updated_at"]
        read_only_fields = ["updated_at"]


class SiteHealthSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="healthy, unhealthy or unknown")
    consecutive_failures = serializers.IntegerField()
    last_checked_at = serializers.DateTimeField(allow_null=True)
    last_response_time_ms = serializers.FloatField(allow_null=True)


class SiteSerializer(serializers.ModelSerializer):
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)
    template = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=SiteTemplate.objects.filter(is_active=True),
        required=False,
        allow_null=True,
        help_text="Create from this template (write-once).",
    )
    slug = serializers.SlugField(max_length=40, required=False)
    limits = ResourceLimitSerializer(required=False, help_text="Limits to create the site with.")
    subdomain = serializers.CharField(read_only=True)
    url = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Where visitors reach the site through its host's proxy (null: none).",
    )
    health = SiteHealthSerializer(
        read_only=True, allow_null=True, help_text="From the health checks (null: none yet)."
    )

    class Meta:
        model = Site
        list_serializer_class = FastListSerializer
        fields = [
            "id",
            "name",
            "slug",
            "site_type",
            "template",
            "image",
            "repository_url",
            "branch",
            "build_command",
            "start_command",
            "internal_port",
            "health_check_path",
            "subdomain",
            "url",
            "host",
            "desired_state",
            "observed_state",
            "needs_restart",
            "reconcile_status",
            "reconcile_error",
            "reconciled_at",
            "is_private",
            "sleep_after_minutes",
            "asleep_since",
            "throttled_until",
            "required_labels",
            "persistent_volume",
            "volume_bytes",
            "volume_measured_at",
            "health",
            "limits",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "host",
            "volume_bytes",
            "volume_measured_at",
            "asleep_since",
            "throttled_until",
            "observed_state",
            "needs_restart",
            "reconcile_status",
            "reconcile_error",
            "reconciled_at",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs):
        if self.instance is not None:
            for name in (
                "slug",
                "site_type",
                "template",
                "limits",
                "desired_state",
                "required_labels",
            ):
                if name in attrs:
                    raise serializers.ValidationError(
                        {name: "Cannot be changed here (use the limits/ or action endpoints)."}
                    )
        return attrs


class DomainSerializer(serializers.ModelSerializer):
    txt_record_name = serializers.CharField(read_only=True)

    class Meta:
        model = Domain
        fields = [
            "id",
            "hostname",
            "is_primary",
            "ssl_enabled",
            "tls_mode",
            "is_cloudflare",
            "cloudflare_only",
            "verification_token",
            "txt_record_name",
            "verified_at",
            "created_at",
        ]
        read_only_fields = ["id", "verification_token", "verified_at", "created_at"]
        extra_kwargs = {"hostname": {"validators": []}}

    def validate(self, attrs):
        if self.instance is not None and "hostname" in attrs:
            raise serializers.ValidationError({"hostname": "Remove the domain and add it again."})
        return attrs


class EnvironmentVariableSerializer(serializers.ModelSerializer):
    value = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=32768)

    class Meta:
        model = EnvironmentVariable
        fields = ["id", "key", "value", "is_secret", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"key": {"validators": []}}

    def validate(self, attrs):
        if self.instance is not None and "key" in attrs and attrs["key"] != self.instance.key:
            raise serializers.ValidationError({"key": "Delete the variable and set a new one."})
        return attrs

    def to_representation(self, var):
        data = super().to_representation(var)
        if var.is_secret:
            token = request_token(self.context["request"])
            can_read = token is not None and token.has_scope(Scope.SECRETS_READ)
            data["value"] = reveal_env_value(var) if can_read else MASK
        return data


class ContainerSerializer(serializers.ModelSerializer):
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Container
        fields = [
            "id",
            "docker_id",
            "name",
            "image",
            "state",
            "status",
            "host",
            "labels",
            "ports",
            "created",
            "last_seen_at",
            "retired_at",
        ]
        read_only_fields = fields


class QuotaSerializer(serializers.ModelSerializer):
    usage = serializers.SerializerMethodField()

    class Meta:
        model = OrganizationQuota
        fields = [*QUOTA_FIELDS, "usage"]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "sites": {"type": "integer"},
                "memory_mb": {"type": "integer"},
                "cpu_percent": {"type": "integer"},
                "disk_mb": {"type": "integer"},
                "port_forwards": {"type": "integer"},
            },
        }
    )
    def get_usage(self, quota):
        from hosting.services import usage_of

        return usage_of(quota.organization)


class SiteTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = SiteTemplate
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "site_type",
            "image",
            "build_command",
            "start_command",
            "internal_port",
            "health_check_path",
            "default_limits",
            "env_keys",
        ]
        read_only_fields = fields


class DockerHostSerializer(serializers.ModelSerializer):
    class Meta:
        model = DockerHost
        fields = [
            "id",
            "name",
            "endpoint",
            "address",
            "public_address",
            "draining",
            "tls_ca_cert",
            "tls_client_cert",
            "tls_client_key",
            "ssh_host_key",
            "status",
            "last_seen_at",
            "last_error",
            "engine_version",
            "cpus",
            "memory_bytes",
            "storage_driver",
            "supports_disk_quota",
            "labels",
            "network_mode",
            "proxy_admin",
            "proxy_listen",
            "proxy_http_port",
            "proxy_https_port",
            "proxy_access_log",
            "proxy_synced_at",
            "proxy_error",
            "worker_name",
            "worker_heartbeat_at",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "proxy_synced_at",
            "proxy_error",
            "worker_name",
            "worker_heartbeat_at",
            "last_seen_at",
            "last_error",
            "engine_version",
            "cpus",
            "memory_bytes",
            "storage_driver",
            "supports_disk_quota",
            "created_at",
        ]


class ShareLinkSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="email", read_only=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = ShareLink
        fields = [
            "id",
            "label",
            "expires_at",
            "created_by",
            "created_at",
            "revoked_at",
            "last_used_at",
            "uses",
            "active",
        ]
        read_only_fields = ["id", "created_by", "created_at", "revoked_at", "last_used_at", "uses"]
        extra_kwargs = {"expires_at": {"required": True}}

    def get_active(self, link) -> bool:
        return link.active()


class ShareLinkCreatedSerializer(ShareLinkSerializer):
    url = serializers.CharField(
        read_only=True, allow_null=True, help_text="The site's address with the token (once)."
    )
    token = serializers.CharField(read_only=True, help_text="Shown once; stored as a hash.")

    class Meta(ShareLinkSerializer.Meta):
        fields = [*ShareLinkSerializer.Meta.fields, "token", "url"]


class RuntimeLogQuerySerializer(serializers.Serializer):
    tail = serializers.IntegerField(
        min_value=1, max_value=2000, default=200, help_text="How many of the last lines."
    )
    after = serializers.IntegerField(
        min_value=0, default=0, help_text="The `cursor` of the previous answer: newer lines only."
    )


class RuntimeLogLineSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    text = serializers.CharField()


class RuntimeLogSerializer(serializers.Serializer):
    container = serializers.CharField(allow_null=True, help_text="null: nothing serves now.")
    lines = RuntimeLogLineSerializer(many=True)
    cursor = serializers.IntegerField(help_text="Pass as `after` to follow.")


class EnvironmentVariableRevealSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField()
    value = serializers.CharField()


class TerminalTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Shown once; spent by the socket's first frame.")
    url = serializers.CharField(help_text="The terminal's WebSocket.")
    expires_at = serializers.DateTimeField()
    container = serializers.CharField()


class PortForwardSerializer(serializers.ModelSerializer):
    address = serializers.CharField(read_only=True, help_text="The host's public address.")
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = PortForward
        fields = ["id", "container_port", "public_port", "address", "host", "created_at"]
        read_only_fields = ["id", "public_port", "address", "host", "created_at"]
