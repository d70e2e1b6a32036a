"""The panel's URLs plus `/bare/<org>/sites/`, the reference view of bench/api.py."""

from django.urls import path
from rest_framework import generics, renderers, serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated

from hosting.api.serializers import SiteSerializer
from hosting.models import ResourceLimit, Site
from hostpanel.urls import urlpatterns as panel_urlpatterns


class BareLimits(serializers.ModelSerializer):
    class Meta:
        model = ResourceLimit
        fields = [
            "memory_mb",
            "cpu_percent",
            "disk_mb",
            "bandwidth_mb",
            "requests_per_minute",
            "max_processes",
            "updated_at",
        ]


class BareSite(serializers.ModelSerializer):
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)
    template = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    limits = BareLimits(read_only=True)
    subdomain = serializers.CharField(read_only=True)
    url = serializers.CharField(read_only=True, allow_null=True)

    class Meta:
        model = Site
        fields = SiteSerializer.Meta.fields


class Page(PageNumberPagination):
    page_size = 50


class BareSites(generics.ListAPIView):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]
    serializer_class = BareSite
    pagination_class = Page
    filter_backends: list = []
    throttle_classes: list = []
    renderer_classes = [renderers.JSONRenderer]  # DRF's own, not the panel's orjson one

    def get_queryset(self):
        return (
            Site.objects.filter(
                organization__slug=self.kwargs["org"],
                organization__memberships__user=self.request.user,
                deleted_at__isnull=True,
            )
            .select_related("organization", "host", "limits", "template")
            .order_by("organization__slug", "slug")
        )


urlpatterns = [path("bare/<slug:org>/sites/", BareSites.as_view()), *panel_urlpatterns]
