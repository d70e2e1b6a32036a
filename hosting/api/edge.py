"""What the proxies call (DESIGN.md, "Data plane"): the on-demand TLS `ask`, the wake-up of
a sleeping site, and the forward_auth of a private site. Public: a proxy calls them for its
visitors, and none of them tells or changes more than a visit to the site would."""

from __future__ import annotations

import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core import signing
from django.http import Http404, HttpResponse
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
    """The proxy's forward_auth for private sites: 200 lets the request through; a share
    link's token (`?hp_share=`) is swapped for a cookie on the site's host (302 back to the
    address without the token); anything else is a 401 page."""

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(description="Let through."),
            302: OpenApiResponse(description="Token swapped for a cookie; back without it."),
            401: OpenApiResponse(description="No valid share link."),
        },
    )
    def get(self, request, site_id):
        site = Site.objects.alive().filter(pk=site_id).select_related("organization").first()
        if site is None or not site.is_private:
            return HttpResponse(status=200 if site is not None else 404)
        cookie = share_cookie_name(site)
        signer = signing.TimestampSigner(salt=f"share:{site.pk}")
        link_id = None
        with contextlib.suppress(signing.BadSignature):
            link_id = signer.unsign(request.COOKIES.get(cookie, ""))
        if (
            link_id
            and ShareLink.objects.filter(
                pk=link_id, site=site, revoked_at__isnull=True, expires_at__gt=timezone.now()
            ).exists()
        ):
            return HttpResponse(status=200)
        uri = urlsplit(request.headers.get("X-Forwarded-Uri", "/"))
        query = parse_qsl(uri.query, keep_blank_values=True)
        token = dict(query).get(services.SHARE_TOKEN_PARAM)
        link = services.use_share_link(site, token) if token else None
        if link is None:
            response = HttpResponse(
                proxy.private_page(), status=401, content_type="text/html; charset=utf-8"
            )
            response["Cache-Control"] = "no-store"
            return response
        back = urlunsplit(
            (
                "",
                "",
                uri.path or "/",
                urlencode([(k, v) for k, v in query if k != services.SHARE_TOKEN_PARAM]),
                "",
            )
        )
        response = HttpResponse(status=302, headers={"Location": back})
        response.set_cookie(
            cookie,
            signer.sign(str(link.pk)),
            expires=link.expires_at,
            httponly=True,
            samesite="Lax",
            secure=request.headers.get("X-Forwarded-Proto") == "https",
        )
        response["Cache-Control"] = "no-store"
        return response

    post = put = patch = delete = get


def share_cookie_name(site: Site) -> str:
    return f"hp_share_{site.pk.hex[:12]}"
