"""Notifications of an organization: your own email choices (every member), the outgoing
webhooks and the recent deliveries (admins)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from accounts.models import Role
from hostpanel.api.viewsets import OrganizationScopedViewSet
from notifications import services
from notifications.api import serializers as s
from notifications.events import EVENTS
from notifications.models import Delivery, Webhook


class MyNotificationsViewSet(OrganizationScopedViewSet):
    """GET and PATCH your own choices: which events reach you by email."""

    serializer_class = s.MyNotificationsSerializer
    pagination_class = None
    filter_backends: list = []
    minimum_roles = {"partial_update": Role.VIEWER}

    def _answer(self, events):
        return Response({"email_events": events, "events": EVENTS})

    @extend_schema(responses={200: s.MyNotificationsSerializer})
    def retrieve(self, request, *args, **kwargs):
        return self._answer(services.email_events(self.organization, request.user, self.role))

    @extend_schema(
        request=s.MyNotificationsSerializer, responses={200: s.MyNotificationsSerializer}
    )
    def partial_update(self, request, *args, **kwargs):
        serializer = s.MyNotificationsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        events = services.set_email_events(
            self.organization, request.user, serializer.validated_data["email_events"]
        )
        return self._answer(events)


class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrganizationScopedViewSet,
):
    """Outgoing webhooks (admins). Each delivery is a JSON POST signed with the secret
    shown once at creation: `X-Hostpanel-Signature: sha256=HMAC(secret, "<X-Hostpanel-
    Timestamp>.<body>")`."""

    queryset = Webhook.objects.all()
    serializer_class = s.WebhookSerializer
    filter_backends: list = []
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    minimum_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    @extend_schema(responses={201: s.WebhookCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        hook, secret = services.create_webhook(
            self.organization, actor=request.user, url=data["url"], events=data["events"]
        )
        body = dict(s.WebhookCreatedSerializer(hook).data)
        body["secret"] = secret
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = services.update_webhook(
            serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.delete_webhook(instance, actor=self.request.user)


class DeliveryViewSet(mixins.ListModelMixin, OrganizationScopedViewSet):
    """What was sent for the organization's events, newest first (admins)."""

    queryset = Delivery.objects.all()
    serializer_class = s.DeliverySerializer
    filter_backends: list = []
    minimum_roles = {"list": Role.ADMIN}
