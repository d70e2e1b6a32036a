"""Usage of a site as a series, an organization's daily usage as CSV, platform statistics."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.response import Response

from hosting.api.views import SiteScopedMixin
from hostpanel.api.permissions import IsStaff
from hostpanel.api.viewsets import OrganizationScopedMixin
from monitoring import stats, usage
from monitoring.api import serializers as s
from monitoring.models import DailyUsage, UsageSample

_SERIES_ERRORS = OpenApiResponse(
    description="Bad dates, `from` not before `to`, a range too long for the resolution, "
    "or an unknown resolution: JSON with a message per field."
)
_CSV_ERRORS = OpenApiResponse(
    description="Bad dates, `from` after `to`, or more than 366 days: JSON with a message "
    "per field."
)


class SiteUsageView(SiteScopedMixin, generics.GenericAPIView):
    """Usage of one site over time (viewers and up)."""

    queryset = UsageSample.objects.all()
    serializer_class = s.UsageSeriesSerializer
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        operation_id="organizations_sites_usage_retrieve",
        parameters=[
            OpenApiParameter(
                "from",
                OpenApiTypes.DATETIME,
                description="Start (included), ISO 8601. Default: 24 hours before `to` "
                "(raw, hour) or 30 days before it (day).",
            ),
            OpenApiParameter(
                "to", OpenApiTypes.DATETIME, description="End (excluded), ISO 8601. Default: now."
            ),
            OpenApiParameter(
                "resolution",
                OpenApiTypes.STR,
                enum=list(usage.RESOLUTIONS),
                default=usage.DEFAULT_RESOLUTION,
                description="raw: every sample (range up to 2 days); hour: hourly averages, "
                "maxima and sums (up to 31 days); day: the daily rollups (up to 366 days).",
            ),
        ],
        responses={200: s.UsageSeriesSerializer, 400: _SERIES_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        query = s.UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end, resolution = (query.validated_data[k] for k in ("from", "to", "resolution"))
        return Response(
            {
                "site": self.site.slug,
                "resolution": resolution,
                "from": usage.iso(start),
                "to": usage.iso(end),
                "series": usage.series(self.site, start, end, resolution),
                "requests": usage.requests_series(self.site, start, end, resolution),
            }
        )


class DailyUsageCsvView(OrganizationScopedMixin, generics.GenericAPIView):
    """Daily usage of every site of the organization, deleted sites included, as CSV."""

    queryset = DailyUsage.objects.all()
    pagination_class = None
    filter_backends: list = []

    def perform_content_negotiation(self, request, force=False):
        # The body is CSV whatever the Accept header says; errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="organizations_usage_daily_csv_retrieve",
        parameters=[
            OpenApiParameter(
                "from",
                OpenApiTypes.DATE,
                description="First day (UTC), default 29 days before `to`.",
            ),
            OpenApiParameter("to", OpenApiTypes.DATE, description="Last day (UTC), default today."),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="Header: " + ",".join(usage.CSV_COLUMNS) + "; one row per site and "
                "day, ordered by date then site. At most 366 days.",
            ),
            400: _CSV_ERRORS,
        },
    )
    def get(self, request, *args, **kwargs):
        query = s.DailyCsvQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        first, last = query.validated_data["from"], query.validated_data["to"]
        response = StreamingHttpResponse(
            usage.daily_csv(self.organization, first, last), content_type="text/csv; charset=utf-8"
        )
        filename = f"{self.organization.slug}-usage-{first:%Y-%m-%d}-{last:%Y-%m-%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class PlatformStatsView(generics.GenericAPIView):
    """Staff only: counts across the platform (seed 001's dashboard statistics)."""

    permission_classes = [IsStaff]
    serializer_class = s.PlatformStatsSerializer
    pagination_class = None
    filter_backends: list = []

    def get(self, request, *args, **kwargs):
        return Response(stats.platform_stats())
