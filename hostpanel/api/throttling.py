"""Rate limits: anonymous callers by IP, tokens by token, sessions by user."""

from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle

from hostpanel.api.permissions import request_token


class AnonThrottle(AnonRateThrottle):
    scope = "anon"


class TokenThrottle(SimpleRateThrottle):
    scope = "token"

    def get_cache_key(self, request, view):
        token = request_token(request)
        if token is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": token.pk}


class SessionUserThrottle(SimpleRateThrottle):
    scope = "user"

    def get_cache_key(self, request, view):
        if not request.user.is_authenticated or request_token(request) is not None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class RegisterThrottle(SimpleRateThrottle):
    """Sign-ups with registration codes, per IP: the code space must not be brute-forced."""

    scope = "register"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class WebhookThrottle(SimpleRateThrottle):
    """Git webhooks, per hook: git hosts send every delivery from a few shared addresses."""

    scope = "webhook"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": view.kwargs.get("webhook_id")}
