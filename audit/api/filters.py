import django_filters
from django.db.models import Q

from audit.models import AuditLog


class AuditLogFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search actor, target or action")
    action = django_filters.BaseInFilter(field_name="action", label="Action names, comma-separated")
    action_prefix = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    exclude_action = django_filters.BaseInFilter(
        field_name="action", exclude=True, label="Leave out these actions, comma-separated"
    )
    actor = django_filters.UUIDFilter(field_name="actor_id")
    since = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = AuditLog
        fields = ["target_type", "target_id", "token_id", "ip", "request_id"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(actor_label__icontains=value)
            | Q(target_label__icontains=value)
            | Q(action__icontains=value)
        )
