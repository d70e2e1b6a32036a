"""Deployment endpoints (list, request, cancel, rollback, logs by polling and by server-sent
events), the git webhook receiver and a site's webhook settings.

Every change is made by `hosting.deployments` or `hosting.webhooks`; these views only check
who may ask, translate the request and shape the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import django_filters
from django.db.models import Q
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role, Scope
from hosting import deployments, webhooks
from hosting.api.views import SiteScopedMixin
from hosting.models import Deployment, DeploymentStatus, DeploymentTrigger, Site
from hostpanel.api.permissions import request_token
from hostpanel.api.throttling import WebhookThrottle

S = DeploymentStatus
# The stages a deployment walks through; `progress.index` is the position in this list.
PIPELINE = (S.QUEUED, S.CLONING, S.BUILDING, S.STARTING, S.HEALTHY, S.SUCCEEDED)

# Server-sent events: how often the database is read, when a quiet stream sends a comment
# so proxies keep it open, and how long one stream may last (the browser's EventSource
# reconnects by itself, resuming with Last-Event-ID).
STREAM_POLL_SECONDS = 0.5
STREAM_KEEPALIVE_SECONDS = 15.0
STREAM_MAX_SECONDS = 15 * 60
STREAM_RETRY_MS = 3000
# A worker writes its last buffered output just after the final transition: a log is
# complete this long after the deployment ended (at once if it never started).
LOG_SETTLE_SECONDS = 2.0

pause_between_polls = time.sleep  # the seam tests replace to act between two polls


def log_finished(deployment: Deployment, now=None) -> bool:
    """The deployment has ended and no more output will come."""
    if not deployment.is_final:
        return False
    if deployment.started_at is None or deployment.finished_at is None:
        return True
    now = now or timezone.now()
    return now - deployment.finished_at >= timedelta(seconds=LOG_SETTLE_SECONDS)


def progress_of(deployment: Deployment) -> dict:
    """{stage, index, total}: where the deployment is, or where it ended."""
    stage = deployment.status
    if stage not in PIPELINE:
        earlier = [t.get("status") for t in deployment.transitions or []]
        reached = [s for s in earlier if s in PIPELINE]
        stage = reached[-1] if reached else S.QUEUED
    return {"stage": stage, "index": PIPELINE.index(stage), "total": len(PIPELINE) - 1}


# --- serializers ------------------------------------------------------------------------------


class DeploymentProgressSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=[str(s) for s in PIPELINE])
    index = serializers.IntegerField(help_text="0 while queued; `total` when succeeded.")
    total = serializers.IntegerField()


# `status` has one enum in the schema, on Deployment: another component with the same enum
# would make drf-spectacular name it with a hash (hosts have a `status` enum too).
STATUS_HELP = "A deployment status (see Deployment.status)."


class DeploymentTransitionSerializer(serializers.Serializer):
    status = serializers.CharField(help_text=STATUS_HELP)
    at = serializers.DateTimeField()


class DeploymentSerializer(serializers.ModelSerializer):
    triggered_by = serializers.SlugRelatedField(
        slug_field="email", read_only=True, help_text="Who asked (null for webhooks)."
    )
    rollback_of = serializers.PrimaryKeyRelatedField(
        read_only=True, help_text="The deployment this one rolls back to."
    )
    transitions = DeploymentTransitionSerializer(many=True, read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "number",
            "status",
            "trigger",
            "triggered_by",
            "branch",
            "commit_hash",
            "commit_message",
            "image_tag",
            "build_time_seconds",
            "error",
            "cancel_requested",
            "transitions",
            "progress",
            "created_at",
            "started_at",
            "finished_at",
            "rollback_of",
            "log_size",
        ]
        read_only_fields = fields

    @extend_schema_field(DeploymentProgressSerializer)
    def get_progress(self, deployment: Deployment) -> dict:
        return progress_of(deployment)


class DeploymentCreateSerializer(serializers.Serializer):
    branch = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="Branch to deploy; the site's branch when left out.",
    )


class LogChunkSerializer(serializers.Serializer):
    offset = serializers.IntegerField(help_text="Byte offset of the chunk in the whole log.")
    stage = serializers.CharField()
    text = serializers.CharField()


class DeploymentLogSerializer(serializers.Serializer):
    chunks = LogChunkSerializer(many=True)
    next_after = serializers.IntegerField(help_text="Pass as `after` to get only newer output.")
    truncated_before = serializers.IntegerField(
        help_text="Output before this byte offset was dropped (logs keep their tail); 0: none."
    )
    status = serializers.CharField(help_text=STATUS_HELP)
    finished = serializers.BooleanField(help_text="The deployment ended; no more output comes.")
    log_size = serializers.IntegerField(help_text="Bytes written so far, dropped ones included.")


class LogQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=-1, required=False, default=-1)


class WebhookConfigSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Where the git host sends pushes.")
    webhook_id = serializers.UUIDField()
    branch = serializers.CharField(help_text="Pushes to this branch deploy.")
    has_secret = serializers.BooleanField(help_text="A secret is set (it is shown once, when set).")


class WebhookSecretSerializer(WebhookConfigSerializer):
    secret = serializers.CharField(help_text="The new secret. It is not shown again.")


class DeploymentFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search commit, message or branch")

    class Meta:
        model = Deployment
        fields = ["status", "trigger", "branch"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(commit_hash__istartswith=value)
            | Q(commit_message__icontains=value)
            | Q(branch__icontains=value)
        )


# --- deployments ------------------------------------------------------------------------------

_REFUSED = OpenApiResponse(description="Refused by the pipeline: JSON with a message per field.")
_STREAM_DESCRIPTION = """Server-sent events (`text/event-stream`) for pages:

- `event: status`, data `{"status", "progress", "error", "truncated_before"}`: sent first and
  whenever the status changes;
- `event: log`, `id: <offset>`, data `{"offset", "stage", "text"}`: each new chunk of output;
- `event: end`, data `{"status", "error"}`: the deployment ended and its log is complete;
  the stream then closes.

Resume with the `Last-Event-ID` header (sent by `EventSource` when it reconnects) or
`?after=<offset>`. The server reads the database every 0.5 s, sends a `: keepalive` comment
when quiet, and closes a stream after 15 minutes (`EventSource` reconnects)."""


class DeploymentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, SiteScopedMixin, viewsets.GenericViewSet
):
    """Deployments of a site: git to a running site, one at a time, in order.

    Members request, cancel and roll back (a token needs the `deploy` scope); viewers read.
    Requests answer 202: the deployment is queued and a worker runs it.
    """

    queryset = Deployment.objects.select_related("triggered_by")
    serializer_class = DeploymentSerializer
    filterset_class = DeploymentFilterSet
    ordering_fields = ["number", "created_at", "finished_at", "status"]
    ordering = ["-number"]
    required_scopes = {"create": Scope.DEPLOY, "cancel": Scope.DEPLOY, "rollback": Scope.DEPLOY}
    minimum_roles = {"create": Role.MEMBER, "cancel": Role.MEMBER, "rollback": Role.MEMBER}

    def _token_id(self):
        token = request_token(self.request)
        return token.pk if token is not None else None

    def _answer(self, deployment: Deployment, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=deployment.pk)
        return Response(self.get_serializer(fresh).data, status=code)

    @extend_schema(
        request=DeploymentCreateSerializer,
        responses={202: DeploymentSerializer, 400: _REFUSED},
    )
    def create(self, request, *args, **kwargs):
        """Deploy the site's branch (or `branch`) at its newest commit. While an identical
        request is still queued, that deployment is returned instead of a second one."""
        serializer = DeploymentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = deployments.request_deployment(
            self.site,
            actor=request.user,
            trigger=DeploymentTrigger.API,
            token_id=self._token_id(),
            branch=serializer.validated_data.get("branch", ""),
            reuse_queued=True,
        )
        return self._answer(deployment, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: DeploymentSerializer, 400: _REFUSED})
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        """Cancel: a queued deployment at once, a running one at its next checkpoint
        (`cancel_requested` shows it was asked). An ended deployment is a 400."""
        deployment = deployments.cancel(self.get_object(), actor=request.user)
        return self._answer(deployment)

    @extend_schema(request=None, responses={202: DeploymentSerializer, 400: _REFUSED})
    @action(detail=True, methods=["post"])
    def rollback(self, request, *args, **kwargs):
        """Roll back to this (succeeded) deployment: its image and the configuration it ran
        with (env, limits, start command, port), as a new deployment, answered here."""
        deployment = deployments.request_rollback(
            self.get_object(), actor=request.user, token_id=self._token_id()
        )
        return self._answer(deployment, status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "after",
                OpenApiTypes.INT,
                description="Only chunks starting after this byte offset (the `next_after` "
                "of the previous answer); -1 or left out: from the start.",
            )
        ],
        responses={200: DeploymentLogSerializer, 400: _REFUSED},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def log(self, request, *args, **kwargs):
        """The build and start output, for polling: call again with `after=next_after` until
        `finished`. Logs keep their tail: `truncated_before` says where the kept part starts."""
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        deployment = self.get_object()
        # Whether it has ended is decided before reading: all output of an ended one is then in.
        finished = log_finished(deployment)
        data = deployments.read_log(deployment, query.validated_data["after"])
        data.update(status=deployment.status, finished=finished, log_size=deployment.log_size)
        return Response(data)

    def perform_content_negotiation(self, request, force=False):
        # The stream is text/event-stream whatever the Accept header; its errors stay JSON.
        return super().perform_content_negotiation(request, force=force or self.action == "stream")

    @extend_schema(
        operation_id="organizations_sites_deployments_log_stream",
        description=_STREAM_DESCRIPTION,
        parameters=[
            OpenApiParameter(
                "after", OpenApiTypes.INT, description="Start after this byte offset."
            ),
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.INT,
                location=OpenApiParameter.HEADER,
                description="Resume after this offset (wins over `after`).",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR, description="The event stream."
            ),
            400: _REFUSED,
        },
        filters=False,
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="log/stream",
        url_name="log-stream",
        filter_backends=[],
        pagination_class=None,
    )
    def stream(self, request, *args, **kwargs):
        query = LogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data["after"]
        last_event = request.headers.get("Last-Event-ID", "").strip()
        if last_event.lstrip("-").isdigit():
            after = max(int(last_event), -1)
        deployment = self.get_object()
        response = StreamingHttpResponse(
            event_stream(deployment.pk, after), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_stream(deployment_id, after: int = -1) -> Iterator[str]:
    """Server-sent events for one deployment's log and status, until it ends."""
    started = last_sent = time.monotonic()
    status_sent = None
    yield f"retry: {STREAM_RETRY_MS}\n\n"
    while True:
        deployment = Deployment.objects.filter(pk=deployment_id).first()
        if deployment is None:
            yield _event("end", {"status": None, "error": "The deployment no longer exists."})
            return
        # Whether it has ended is decided before reading: all output of an ended one is then in.
        finished = log_finished(deployment)
        log = deployments.read_log(deployment, after)
        if deployment.status != status_sent:
            status_sent = deployment.status
            last_sent = time.monotonic()
            yield _event(
                "status",
                {
                    "status": deployment.status,
                    "progress": progress_of(deployment),
                    "error": deployment.error,
                    "truncated_before": log["truncated_before"],
                },
            )
        for chunk in log["chunks"]:
            after = chunk["offset"]
            last_sent = time.monotonic()
            yield _event("log", chunk, chunk["offset"])
        if finished:
            yield _event("end", {"status": deployment.status, "error": deployment.error})
            return
        now = time.monotonic()
        if now - started >= STREAM_MAX_SECONDS:
            yield ": stream time limit reached; reconnect to continue\n\n"
            return
        if now - last_sent >= STREAM_KEEPALIVE_SECONDS:
            last_sent = now
            yield ": keepalive\n\n"
        pause_between_polls(STREAM_POLL_SECONDS)


# --- webhooks ---------------------------------------------------------------------------------

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


class WebhookPongSerializer(serializers.Serializer):
    detail = serializers.CharField()


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
