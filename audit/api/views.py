from rest_framework import mixins

from accounts.models import Role
from audit.api.filters import AuditLogFilterSet
from audit.api.serializers import AuditLogSerializer
from audit.models import AuditLog
from hostpanel.api.pagination import TimestampCursorPagination
from hostpanel.api.viewsets import OrganizationScopedViewSet


class AuditLogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationScopedViewSet):
    """The organization's audit trail, newest first (read-only; admins and owners)."""

    queryset = AuditLog.objects.all()
    serializer_class = AuditLogSerializer
    filterset_class = AuditLogFilterSet
    pagination_class = TimestampCursorPagination
    ordering_fields: list[str] = []
    minimum_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}
