"""The git webhook receiver and a site's webhook settings. Changes are made by
`hosting.webhooks`."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role
from hosting import webhooks
from hosting.api.deployments.serializers import (
    DeploymentSerializer,
    WebhookConfigSerializer,
    WebhookPongSerializer,
    WebhookSecretSerializer,
)
from hosting.api.views import SiteScopedMixin
from hosting.models import Deployment, Site
from hostpanel.api.throttling import WebhookThrottle

_WEBHOOK_DESCRIPTION = f"""Git push webhook of one site (no authentication: the signature is
the proof). Point GitHub (content type `application/json`, the site's secret) or any git
host at this URL.

Signatures are HMAC-SHA256 with the site's webhook secret, hex-encoded with `sha256=`:

- GitHub: `X-Hub-Signature-256: sha256=<hmac(secret, raw body)>`, delivery id in
  `X-GitHub-Delivery`, event in `X-GitHub-Event` (`ping` answers 200 `pong`; `push` deploys).
- Generic: `X-Hostpanel-Signature: sha256=<hmac(secret, "{{timestamp}}.{{raw body}}")>` with
  `X-Hostpanel-Timestamp: <unix seconds>` (within 5 minutes of the server's clock) and
  `X-Hostpanel-Delivery: <unique id>`; optional `X-Hostpanel-Event` (`push` or `ping`).

The body is JSON with `ref`; only `refs/heads/<site branch>` deploys (202 with the queued
deployment). Another branch, a tag or a deleted branch: 422, nothing deployed. Missing or
bad signature, or a stale timestamp: 401 (audited as `webhook.rejected`). A delivery id or a
signed request seen before: 409 (the same signed body is accepted once: scripts sending a
fixed body use the generic scheme, whose signature covers the timestamp). No secret set for
the site: 403. Bodies over {webhooks.MAX_BODY_BYTES} bytes: 413."""


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=OpenApiTypes.OBJECT, description=description)


class GitWebhookView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [WebhookThrottle]

    @extend_schema(
        operation_id="hooks_git_create",
        description=_WEBHOOK_DESCRIPTION,
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter(name, OpenApiTypes.STR, location=OpenApiParameter.HEADER)
            for name in (
                webhooks.GITHUB_SIGNATURE,
                webhooks.GITHUB_DELIVERY,
                webhooks.GITHUB_EVENT,
                webhooks.GENERIC_SIGNATURE,
                webhooks.GENERIC_TIMESTAMP,
                webhooks.GENERIC_DELIVERY,
                webhooks.GENERIC_EVENT,
            )
        ],
        responses={
            200: WebhookPongSerializer,
            202: DeploymentSerializer,
            400: _error("Malformed JSON, no `ref`, or no delivery id."),
            401: _error("Missing or bad signature, or a stale timestamp."),
            403: _error("The site has no webhook secret."),
            404: _error("No site has this webhook id."),
            409: _error("This delivery was received before."),
            413: _error("The body is too large."),
            422: _error("Not a push to the site's branch: nothing is deployed."),
        },
        auth=[],
    )
    def post(self, request, webhook_id):
        length = request.META.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > webhooks.MAX_BODY_BYTES:
            raise webhooks.WebhookRefused(
                413, "too_large", f"The body is over {webhooks.MAX_BODY_BYTES} bytes."
            )
        result = webhooks.receive(webhook_id, body=request.body, headers=request.headers)
        if result.deployment is None:
            return Response({"detail": result.detail}, status=result.status)
        deployment = Deployment.objects.select_related("triggered_by").get(pk=result.deployment.pk)
        return Response(DeploymentSerializer(deployment).data, status=result.status)


class SiteWebhookViewSet(SiteScopedMixin, viewsets.GenericViewSet):
    """The site's git webhook: its URL, and (admins) a new secret, shown once."""

    queryset = Site.objects.none()
    serializer_class = WebhookConfigSerializer
    pagination_class = None
    filter_backends: list = []
    minimum_roles = {"rotate": Role.ADMIN}

    def _config(self) -> dict:
        path = reverse("api:git-webhook", kwargs={"webhook_id": self.site.webhook_id})
        return {
            "url": self.request.build_absolute_uri(path),
            "webhook_id": self.site.webhook_id,
            "branch": self.site.branch,
            "has_secret": bool(self.site.webhook_secret),
        }

    @extend_schema(operation_id="organizations_sites_webhook_retrieve")
    def retrieve(self, request, *args, **kwargs):
        """The webhook URL and whether a secret is set (the secret itself is never shown)."""
        return Response(WebhookConfigSerializer(self._config()).data)

    @extend_schema(
        operation_id="organizations_sites_webhook_rotate",
        request=None,
        responses={200: WebhookSecretSerializer},
    )
    def rotate(self, request, *args, **kwargs):
        """Set a new secret (the old one stops working) and show it, this once."""
        secret = webhooks.rotate_webhook_secret(self.site, request.user)
        data = WebhookSecretSerializer({**self._config(), "secret": secret}).data
        response = Response(data)
        response["Cache-Control"] = "no-store"
        return response
