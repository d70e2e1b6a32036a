"""The base every tenant endpoint stands on.

`OrganizationScopedMixin` resolves `{org_slug}` once per request from the tenant filter
(`Organization.objects.for_user`), answers 404 to anyone outside it, checks the caller's role
against a per-action minimum, and starts every queryset from the model's own `for_user`
filter narrowed to that organization. Later apps reuse it unchanged.
"""

from __future__ import annotations

from django.db.models import F
from django.http import Http404
from rest_framework import exceptions, viewsets
from rest_framework.permissions import SAFE_METHODS

from accounts.models import Organization, Role, role_at_least
from hostpanel.api.permissions import request_token


class OrganizationScopedMixin:
    organization_url_kwarg = "org_slug"
    # action -> minimum role; actions not listed need viewer to read and member to change.
    minimum_roles: dict[str, str] = {}
    organization: Organization
    role: str

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if getattr(self, "swagger_fake_view", False):
            return
        self.organization = self.resolve_organization(request, kwargs[self.organization_url_kwarg])
        self.role = self.organization.caller_role  # type: ignore[attr-defined]
        minimum = self.minimum_role_for(request)
        if not role_at_least(self.role, minimum):
            raise exceptions.PermissionDenied(
                f"This needs the {minimum} role in {self.organization.slug}; you are {self.role}."
            )

    @staticmethod
    def resolve_organization(request, slug: str) -> Organization:
        # F() reuses the membership join `for_user` filtered on the caller: their own role.
        org = (
            Organization.objects.for_user(request.user, request_token(request))
            .filter(slug=slug)
            .annotate(caller_role=F("memberships__role"))
            .first()
        )
        if org is None:
            raise Http404
        return org

    def minimum_role_for(self, request) -> str:
        action = getattr(self, "action", None)
        if action in self.minimum_roles:
            return self.minimum_roles[action]
        return Role.VIEWER if request.method in SAFE_METHODS else Role.MEMBER

    def get_queryset(self):
        model = self.queryset.model  # type: ignore[attr-defined]
        if getattr(self, "swagger_fake_view", False):
            return model.objects.none()
        request = self.request  # type: ignore[attr-defined]
        return self.queryset.for_user(request.user, request_token(request)).filter(  # type: ignore[attr-defined]
            organization=self.organization
        )

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)  # type: ignore[misc]
        self.attach_organization(page or [])
        return page

    def get_object(self):
        row = super().get_object()  # type: ignore[misc]
        self.attach_organization([row])
        return row

    def attach_organization(self, rows) -> None:
        """Give each row the organization this request resolved: reading `row.organization`
        then needs no join and no query."""
        for row in rows:
            if getattr(row, "organization_id", None) == self.organization.pk:
                row.organization = self.organization

    def get_serializer_context(self):
        context = super().get_serializer_context()  # type: ignore[misc]
        context["organization"] = getattr(self, "organization", None)
        return context


class OrganizationScopedViewSet(OrganizationScopedMixin, viewsets.GenericViewSet):
    """Compose with DRF's list/retrieve/create/... mixins; writes call services."""
