"""Security headers on every response (OWASP's secure-headers list): a Content-Security-Policy
with no inline script anywhere (the console's scripts are files; Swagger UI's start-up script
is served as a file too), no framing, no sniffing, no referrer across origins, and no powerful
browser features."""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from django.conf import settings


def content_security_policy() -> str:
    """The policy, with the terminal's WebSocket allowed when it has an origin of its own
    (TERMINAL_URL on another port or host; a relative one is 'self')."""
    return _policy_for(settings.TERMINAL_URL)


@functools.lru_cache(maxsize=4)
def _policy_for(terminal_url: str) -> str:
    terminal = urlsplit(terminal_url)
    connect = "connect-src 'self'"
    if terminal.scheme in ("ws", "wss") and terminal.netloc:
        connect += f" {terminal.scheme}://{terminal.netloc}"
    return CONTENT_SECURITY_POLICY.replace("connect-src 'self'", connect)


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # Inline style attributes only (no script runs from them).
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        response.headers.setdefault("X-Permitted-Cross-Domain-Policies", "none")
        return response
