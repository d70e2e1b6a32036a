"""The organization's audit trail through the generic endpoint tests: admins read it,
nobody writes it, outsiders get 404."""

from __future__ import annotations

from audit import actions
from audit.services import record
from tests.api_mixin import ApiEndpointMixin


def audit_url(org) -> str:
    return f"/api/v1/organizations/{org.slug}/audit-logs/"


class TestAuditLogApi(ApiEndpointMixin):
    audit_actions = {"create": None, "update": None, "delete": None}
    min_roles = {"read": "admin"}
    max_list_queries = 6

    def list_url(self, cast):
        return audit_url(cast.org)

    def detail_url(self, cast, obj):
        return f"{audit_url(cast.org)}{obj.pk}/"

    def make_object(self, cast):
        return record(
            actions.ORGANIZATION_UPDATE,
            actor=cast.owner,
            organization=cast.org,
            target=cast.org,
            changes={"name": {"before": "old", "after": cast.org.name}},
        )

    def create_data(self, cast):
        return {}

    def update_data(self, cast):
        return {}
