import django_filters
from django.db.models import Q

from hosting.models import (
    Container,
    DockerHost,
    Domain,
    EnvironmentVariable,
    PortForward,
    Site,
    SiteTemplate,
)


class SiteFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search name, slug or image")

    class Meta:
        model = Site
        fields = ["site_type", "desired_state", "observed_state", "needs_restart"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(slug__icontains=value) | Q(image__icontains=value)
        )


class DomainFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="hostname", lookup_expr="icontains")
    verified = django_filters.BooleanFilter(
        field_name="verified_at", lookup_expr="isnull", exclude=True
    )

    class Meta:
        model = Domain
        fields = ["is_primary", "ssl_enabled", "is_cloudflare"]


class PortForwardFilterSet(django_filters.FilterSet):
    class Meta:
        model = PortForward
        fields = ["container_port", "public_port"]


class EnvironmentVariableFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="key", lookup_expr="icontains")

    class Meta:
        model = EnvironmentVariable
        fields = ["is_secret", "key"]


class ContainerFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Container
        fields = ["state"]


class SiteTemplateFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search")

    class Meta:
        model = SiteTemplate
        fields = ["site_type"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))


class DockerHostFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search")

    class Meta:
        model = DockerHost
        fields = ["status", "network_mode"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(endpoint__icontains=value))
