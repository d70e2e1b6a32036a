"""What the viewer's role lets them do, read from the API's own role map (each viewset's
`minimum_roles`, with the same default): pages disable what the API would refuse, and say
why, without a second list of rules to keep in step."""

from __future__ import annotations

from accounts.api.views import InvitationViewSet, MemberViewSet, OrganizationViewSet
from accounts.models import Role, role_at_least
from audit.api.views import AuditLogViewSet
from hosting.api.deployments.views import DeploymentViewSet
from hosting.api.deployments.webhooks import SiteWebhookViewSet
from hosting.api.views import (
    DomainViewSet,
    EnvironmentVariableViewSet,
    PortForwardViewSet,
    ResourceLimitViewSet,
    ShareLinkViewSet,
    SiteViewSet,
)
from notifications.api.views import WebhookViewSet

SAFE = "GET"
# ability -> (viewset, action, HTTP method)
ABILITIES = {
    "org.update": (OrganizationViewSet, "partial_update", "PATCH"),
    "org.delete": (OrganizationViewSet, "destroy", "DELETE"),
    "members.update": (MemberViewSet, "partial_update", "PATCH"),
    "invitations.read": (InvitationViewSet, "list", SAFE),
    "invitations.create": (InvitationViewSet, "create", "POST"),
    "audit.read": (AuditLogViewSet, "list", SAFE),
    "site.create": (SiteViewSet, "create", "POST"),
    "site.update": (SiteViewSet, "partial_update", "PATCH"),
    "site.delete": (SiteViewSet, "destroy", "DELETE"),
    "site.act": (SiteViewSet, "start", "POST"),
    "site.volume": (SiteViewSet, "volume_archive", SAFE),
    "env.write": (EnvironmentVariableViewSet, "create", "POST"),
    "env.reveal": (EnvironmentVariableViewSet, "reveal", "POST"),
    "domain.write": (DomainViewSet, "create", "POST"),
    "limits.update": (ResourceLimitViewSet, "partial_update", "PATCH"),
    "ports.manage": (PortForwardViewSet, "create", "POST"),
    "deploy": (DeploymentViewSet, "create", "POST"),
    "webhook.rotate": (SiteWebhookViewSet, "rotate", "POST"),
    "share.manage": (ShareLinkViewSet, "create", "POST"),
    "webhooks.manage": (WebhookViewSet, "create", "POST"),
}


def minimum_role(viewset, action: str, method: str) -> str:
    if action in viewset.minimum_roles:
        return viewset.minimum_roles[action]
    return Role.VIEWER if method == SAFE else Role.MEMBER


def abilities(role: str | None) -> dict[str, dict]:
    """{ability: {"allowed": bool, "reason": str}} for a member with `role`."""
    answer = {}
    for key, (viewset, action, method) in ABILITIES.items():
        needed = minimum_role(viewset, action, method)
        allowed = role_at_least(role, needed)
        reason = (
            "" if allowed else f"This needs the {needed} role; you are {role or 'not a member'}."
        )
        answer[key] = {"allowed": allowed, "reason": reason}
    return answer
