"""What the proxies call (DESIGN.md, "Data plane"): the on-demand TLS `ask`, the wake-up of
a sleeping site, and the forward_auth of a private site. Public: a proxy calls them for its
visitors, and none of them tells or changes more than a visit to the site would."""

from __future__ import annotations

import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core import signing
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from hosting import proxy, reconcile, services
from hosting.models import ShareLink, Site


class ProxyCallback(APIView):
    """No session, no token, no throttle: the caller is the proxy, for a visitor."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []


class ProxyAskView(ProxyCallback):
    """Caddy's on-demand TLS `ask`: 200 when the panel routes `domain` with a certificate on
    demand (a verified domain of a live site), 404 otherwise. Public: Caddy calls it before
    it asks an ACME server for a certificate, and it tells no more than DNS does."""

    @extend_schema(
        parameters=[OpenApiParameter("domain", OpenApiTypes.STR, required=True)],
        responses={
            200: OpenApiResponse(description="A certificate may be obtained for it."),
            404: OpenApiResponse(description="Not a name routed with on-demand TLS."),
        },
    )
    def get(self, request):
        domain = request.query_params.get("domain", "")
        if not proxy.asks_for_certificate(domain):
            raise Http404
        return Response({"domain": domain.lower()})


class ProxyWakeView(ProxyCallback):
    """Where the proxy sends a sleeping site's visitors: the site is woken, and once it
    answers (within RECONCILE_WAIT_SECONDS) the visitor is sent back to the address they
    asked for (307); otherwise a "waking" page asks them to retry (503, Retry-After)."""

    @extend_schema(
        request=None,
        responses={
            307: OpenApiResponse(description="Awake: back to the address asked for."),
            404: OpenApiResponse(description="No such live site."),
            503: OpenApiResponse(description="Still waking: retry after Retry-After."),
        },
    )
    def get(self, request, site_id):
        site = Site.objects.alive().select_related("organization", "host").filter(pk=site_id)
        site = site.first()
        if site is None:
            raise Http404
        services.wake_site(site)
        site = reconcile.converge_now(site)
        back = request.headers.get("X-Hostpanel-Uri", "/")
        if not back.startswith("/") or back.startswith("//"):
            back = "/"  # only a path on the site's own host
        if site.observed_state == "running" and site.asleep_since is None:
            response = HttpResponse(status=307, headers={"Location": back})
        else:
            response = HttpResponse(
                proxy.waking_page(), status=503, content_type="text/html; charset=utf-8"
            )
            response["Retry-After"] = "2"
        response["Cache-Control"] = "no-store"
        return response

    post = put = patch = delete = get


class ProxyAuthView(ProxyCallback):
    """The proxy's forward_auth for private sites. 200 lets the request through: a cookie of
    a share link or of a member let in by the panel. A share link's token (`?hp_share=`) or
    a member's one-time pass (`?hp_pass=`) is swapped for such a cookie on the site's host
    (302 back to the address without it). A browser with neither is sent to the panel to
    sign in (302); anything else gets a 401 page."""

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(description="Let through."),
            302: OpenApiResponse(
                description="Token swapped for a cookie and back without it; or, for a "
                "browser, to the panel's sign-in."
            ),
            401: OpenApiResponse(description="No valid share link or member sign-in."),
        },
    )
    def get(self, request, site_id):
        site = Site.objects.alive().filter(pk=site_id).select_related("organization").first()
        if site is None:
            raise Http404
        if not site.is_private:
            return HttpResponse(status=200)
        if _holds_share_cookie(request, site) or _holds_member_cookie(request, site):
            return HttpResponse(status=200)
        uri = urlsplit(request.headers.get("X-Forwarded-Uri", "/"))
        query = parse_qsl(uri.query, keep_blank_values=True)
        params = dict(query)
        back = urlunsplit(("", "", uri.path or "/", urlencode(_without_tokens(query)), ""))
        secure = request.headers.get("X-Hostpanel-Scheme") == "https"
        if token := params.get(services.SHARE_TOKEN_PARAM):
            link = services.use_share_link(site, token)
            if link is not None:
                value = _share_signer(site).sign(str(link.pk))
                return _back_with_cookie(
                    back, share_cookie_name(site), value, secure, expires=link.expires_at
                )
        if token := params.get(services.VISIT_PASS_PARAM):
            user = services.use_visit_pass(site, token)
            if user is not None:
                value = _member_signer(site).sign(str(user.pk))
                hours = settings.PRIVATE_SITE_SIGN_IN_HOURS
                return _back_with_cookie(
                    back, member_cookie_name(site), value, secure, max_age=hours * 3600
                )
        sign_in = _sign_in_url(request, site, back)
        if request.headers.get("X-Forwarded-Method", "GET") in ("GET", "HEAD") and (
            "text/html" in request.headers.get("Accept", "")
        ):
            return _redirect(sign_in)  # a browser: straight to the panel, and back
        response = HttpResponse(
            proxy.private_page(sign_in), status=401, content_type="text/html; charset=utf-8"
        )
        response["Cache-Control"] = "no-store"
        return response

    post = put = patch = delete = get


def share_cookie_name(site: Site) -> str:
    return f"hp_share_{site.pk.hex[:12]}"


def member_cookie_name(site: Site) -> str:
    return f"hp_member_{site.pk.hex[:12]}"


def _share_signer(site: Site) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=f"share:{site.pk}")


def _member_signer(site: Site) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=f"member:{site.pk}")


def _holds_share_cookie(request, site: Site) -> bool:
    link_id = None
    with contextlib.suppress(signing.BadSignature):
        link_id = _share_signer(site).unsign(request.COOKIES.get(share_cookie_name(site), ""))
    return bool(link_id) and (
        ShareLink.objects.filter(
            pk=link_id, site=site, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).exists()
    )


def _holds_member_cookie(request, site: Site) -> bool:
    """A member's cookie: signed for this site, not older than PRIVATE_SITE_SIGN_IN_HOURS,
    and its user still an active member (leaving the organization ends it at once)."""
    user_id = None
    with contextlib.suppress(signing.BadSignature):
        user_id = _member_signer(site).unsign(
            request.COOKIES.get(member_cookie_name(site), ""),
            max_age=settings.PRIVATE_SITE_SIGN_IN_HOURS * 3600,
        )
    return bool(user_id) and services.is_site_member(site, user_id)


def _without_tokens(query: list[tuple[str, str]]) -> list[tuple[str, str]]:
    spent = {services.SHARE_TOKEN_PARAM, services.VISIT_PASS_PARAM}
    return [(k, v) for k, v in query if k not in spent]


def _redirect(location: str) -> HttpResponse:
    response = HttpResponse(status=302, headers={"Location": location})
    response["Cache-Control"] = "no-store"
    return response


def _back_with_cookie(back: str, name: str, value: str, secure: bool, **lifetime) -> HttpResponse:
    """The token swapped for a cookie on the site's host (HttpOnly), and back without it."""
    response = _redirect(back)
    response.set_cookie(name, value, httponly=True, samesite="Lax", secure=secure, **lifetime)
    return response


def _sign_in_url(request, site: Site, back: str) -> str:
    """The panel's page that signs a member in and sends them back to the address asked for
    (`back` on the host they asked; the panel checks it is one of the site's names)."""
    host = request.headers.get("X-Hostpanel-Host", "")
    scheme = "https" if request.headers.get("X-Hostpanel-Scheme") == "https" else "http"
    panel = settings.SITE_URL.rstrip("/") + reverse("visit-private-site", args=[site.pk])
    return f"{panel}?{urlencode({'next': f'{scheme}://{host}{back}'})}" if host else panel
