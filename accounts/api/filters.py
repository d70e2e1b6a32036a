import django_filters
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, Invitation, Membership, Organization, Role


class OrganizationFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search name or slug")

    class Meta:
        model = Organization
        fields = ["is_personal"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))


class MembershipFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search email or name")
    role = django_filters.MultipleChoiceFilter(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["role"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(user__email__icontains=value) | Q(user__display_name__icontains=value)
        )


class InvitationFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="email", lookup_expr="icontains")
    role = django_filters.MultipleChoiceFilter(choices=Role.choices)
    status = django_filters.ChoiceFilter(
        method="filter_status",
        choices=[(s, s) for s in ("pending", "accepted", "revoked", "expired")],
    )

    class Meta:
        model = Invitation
        fields = ["role", "email"]

    def filter_status(self, queryset, name, value):
        now = timezone.now()
        if value == "accepted":
            return queryset.filter(accepted_at__isnull=False)
        if value == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        open_ = queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True)
        if value == "expired":
            return open_.filter(expires_at__lte=now)
        return open_.filter(expires_at__gt=now)


class ApiTokenFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search name or prefix")
    organization = django_filters.CharFilter(field_name="organization__slug")
    active = django_filters.BooleanFilter(method="filter_active")

    class Meta:
        model = ApiToken
        fields = ["organization"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(prefix__icontains=value))

    def filter_active(self, queryset, name, value):
        active = queryset.active()
        return active if value else queryset.exclude(pk__in=active.values("pk"))
