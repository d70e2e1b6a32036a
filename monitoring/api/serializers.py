"""Query parameters and response shapes of the usage and statistics endpoints."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from monitoring import usage


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")


class UsageQuerySerializer(serializers.Serializer):
    """`from`, `to` (ISO 8601; a date means its midnight UTC) and `resolution`."""

    to = serializers.DateTimeField(required=False, help_text="End (exclusive); default now.")
    resolution = serializers.ChoiceField(
        choices=usage.RESOLUTIONS, default=usage.DEFAULT_RESOLUTION
    )

    def get_fields(self):
        fields = super().get_fields()
        # `from` is a Python keyword, so the field cannot be declared in the class body.
        fields["from"] = serializers.DateTimeField(required=False)
        return fields

    def validate(self, attrs):
        resolution = attrs["resolution"]
        end = attrs.get("to") or timezone.now()
        start = attrs.get("from") or end - usage.DEFAULT_SPAN[resolution]
        if start >= end:
            raise serializers.ValidationError({"from": "Must be earlier than `to`."})
        longest = usage.MAX_SPAN[resolution]
        if end - start > longest:
            raise serializers.ValidationError(
                {
                    "from": f"The {resolution} resolution covers at most {_days(longest)}; "
                    "ask for a shorter range or a coarser resolution."
                }
            )
        return {"from": start, "to": end, "resolution": resolution}


class UsagePointSerializer(serializers.Serializer):
    t = serializers.DateTimeField(help_text="Start of the bucket (the sample time for raw).")
    cpu_percent = serializers.FloatField(
        allow_null=True, help_text="Average CPU, 100 = one full CPU."
    )
    cpu_percent_max = serializers.FloatField(allow_null=True)
    memory_mb = serializers.FloatField(allow_null=True, help_text="Average memory in use (MiB).")
    memory_mb_max = serializers.FloatField(allow_null=True)
    bandwidth_mb = serializers.FloatField(
        allow_null=True, help_text="Network in + out during the bucket (MiB)."
    )
    samples = serializers.IntegerField(help_text="Readings behind the point.")


class RequestPointSerializer(serializers.Serializer):
    t = serializers.DateTimeField(help_text="Start of the bucket (the collection tick for raw).")
    requests = serializers.IntegerField()
    status_2xx = serializers.IntegerField(allow_null=True, help_text="Empty for days.")
    status_3xx = serializers.IntegerField(allow_null=True)
    status_4xx = serializers.IntegerField(allow_null=True)
    status_5xx = serializers.IntegerField(allow_null=True)
    sent_mb = serializers.FloatField(allow_null=True, help_text="Response bytes (MiB).")
    response_time_ms = serializers.FloatField(allow_null=True, help_text="Average.")
    response_time_p95_ms = serializers.FloatField(
        allow_null=True, help_text="95th percentile (the hour's highest tick for hours)."
    )


class UsageSeriesSerializer(serializers.Serializer):
    site = serializers.SlugField()
    resolution = serializers.ChoiceField(choices=usage.RESOLUTIONS)
    # `from` again: added in get_fields.
    to = serializers.DateTimeField()
    series = UsagePointSerializer(many=True)
    requests = RequestPointSerializer(
        many=True, help_text="Requests through the site's proxy, from its access log."
    )

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField()
        return fields


class DailyCsvQuerySerializer(serializers.Serializer):
    """`from` and `to` are UTC dates, both included."""

    to = serializers.DateField(required=False, help_text="Last day (included); default today.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(required=False)
        return fields

    def validate(self, attrs):
        last = attrs.get("to") or timezone.now().date()
        first = attrs.get("from") or last - timedelta(days=usage.CSV_DEFAULT_DAYS - 1)
        if first > last:
            raise serializers.ValidationError({"from": "Must not be after `to`."})
        if (last - first).days + 1 > usage.CSV_MAX_DAYS:
            raise serializers.ValidationError(
                {"from": f"At most {usage.CSV_MAX_DAYS} days per export."}
            )
        return {"from": first, "to": last}


class TotalActiveSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    active = serializers.IntegerField()


class TotalRunningSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Sites not deleted.")
    running = serializers.IntegerField(help_text="Of those, the ones whose container runs.")


class TotalOnlineSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    online = serializers.IntegerField()


class PlatformStatsSerializer(serializers.Serializer):
    users = TotalActiveSerializer()
    organizations = serializers.IntegerField()
    sites = TotalRunningSerializer()
    domains = serializers.IntegerField()
    hosts = TotalOnlineSerializer()
    containers = serializers.IntegerField(help_text="Containers of sites (the panel's own).")
    other_containers = serializers.IntegerField(
        help_text="Containers the engines report that belong to no site (builds, others')."
    )
