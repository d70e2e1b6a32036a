"""`Authorization: Bearer <token>` for DRF."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from accounts import services
from audit import context


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        token = services.authenticate_token(parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        services.note_token_use(token, context.current().ip)
        context.set_token(str(token.pk))
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword
