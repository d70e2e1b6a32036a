"""Who may call what: authentication, token scopes, organization roles."""

from __future__ import annotations

from rest_framework import permissions

from accounts.models import ApiToken, Scope


def request_token(request) -> ApiToken | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


class TokenScopePermission(permissions.BasePermission):
    """Authenticated callers only; a token needs `read` to read and `write` to change.

    A view may name another scope for an action in `required_scopes` (e.g. deploy), or
    refuse tokens for an action altogether with `session_only_actions`.
    """

    message = "Authentication credentials were not provided."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated and request.user.is_active):
            return False
        token = request_token(request)
        if token is None:
            return True
        action = getattr(view, "action", None)
        if action in getattr(view, "session_only_actions", ()):
            self.message = "This action needs a signed-in session; tokens cannot do it."
            return False
        needed = getattr(view, "required_scopes", {}).get(action)
        if needed is None:
            needed = Scope.READ if request.method in permissions.SAFE_METHODS else Scope.WRITE
        if not token.has_scope(needed):
            self.message = f"This token lacks the '{needed}' scope."
            return False
        return True


class IsStaff(TokenScopePermission):
    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        if not request.user.is_staff:
            self.message = "Staff only."
            return False
        return True
