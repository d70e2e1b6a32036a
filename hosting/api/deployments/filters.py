"""Filters of the deployment list."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from hosting.models import Deployment


class DeploymentFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search commit, message or branch")

    class Meta:
        model = Deployment
        fields = ["status", "trigger", "branch"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(commit_hash__istartswith=value)
            | Q(commit_message__icontains=value)
            | Q(branch__icontains=value)
        )
