"""Deployment endpoints: list, request, cancel, rollback, logs by polling and by server-sent
events. Every change is made by `hosting.deployments`; these views only check who may ask,
translate the request and shape the answer."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Role, Scope
from hosting import deployments
from hosting.api.deployments.filters import DeploymentFilterSet
from hosting.api.deployments.serializers import (
    DeploymentCreateSerializer,
    DeploymentLogSerializer,
    DeploymentSerializer,
    LogQuerySerializer,
)
from hosting.api.deployments.stream import event_stream, log_finished
from hosting.api.views import SiteScopedMixin
from hosting.models import Deployment, DeploymentTrigger
from hostpanel.api.permissions import request_token

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
