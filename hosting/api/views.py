"""Hosting endpoints: sites and what hangs off them, per organization; hosts for staff."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Role, Scope
from hosting import docker as engine
from hosting import forwards, reconcile, services, terminals, volumes
from hosting.api import serializers as s
from hosting.api.filters import (
    ContainerFilterSet,
    DockerHostFilterSet,
    DomainFilterSet,
    EnvironmentVariableFilterSet,
    PortForwardFilterSet,
    SiteFilterSet,
    SiteTemplateFilterSet,
)
from hosting.dns import resolve_txt
from hosting.models import (
    Container,
    DockerHost,
    Domain,
    EnvironmentVariable,
    PortForward,
    ReconcileStatus,
    ResourceLimit,
    ShareLink,
    Site,
    SiteTemplate,
)
from hosting.runtime import current_container
from hostpanel.api.permissions import IsStaff, request_token
from hostpanel.api.viewsets import OrganizationScopedMixin, OrganizationScopedViewSet

HOST_COLUMNS_NOT_LISTED = [
    f"host__{field.name}"
    for field in DockerHost._meta.concrete_fields
    if field.name not in ("id", "name", "proxy_admin", "proxy_http_port")  # Site.url reads them
]


class SiteViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrganizationScopedViewSet,
):
    """Sites of the organization. DELETE (owners) removes the containers and keeps the row."""

    # No join to the organization: the mixin attaches the one it resolved.
    queryset = Site.objects.alive().select_related("host", "limits", "template", "health")
    serializer_class = s.SiteSerializer
    filterset_class = SiteFilterSet
    ordering_fields = ["name", "slug", "created_at", "observed_state"]
    lookup_field = "slug"
    lookup_url_kwarg = "site_slug"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    # terminal: the organization's terminal_access decides beyond this (hosting/terminals.py)
    minimum_roles = {"destroy": Role.OWNER, "volume_archive": Role.ADMIN, "terminal": Role.MEMBER}
    session_only_actions = ("terminal",)
    # The files may hold anything the app keeps (its database, its keys): as a secret.
    required_scopes = {"volume_archive": Scope.SECRETS_READ}

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        site = services.create_site(
            self.organization, actor=request.user, **serializer.validated_data
        )
        reconcile.converge_now(site)
        return Response(
            self.get_serializer(self._reload(site)).data, status=status.HTTP_201_CREATED
        )

    def perform_update(self, serializer):
        serializer.instance = services.update_site(
            serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        site = services.delete_site(instance, actor=self.request.user)
        reconcile.converge_now(site)

    def get_queryset(self):
        rows = super().get_queryset()
        if self.action == "list":  # the list shows its host by name; nothing else of it is read
            rows = rows.defer(*HOST_COLUMNS_NOT_LISTED)
        return rows

    def _reload(self, site: Site) -> Site:
        site = self.get_queryset().get(pk=site.pk)
        self.attach_organization([site])
        return site

    def _act(self, operation) -> Response:
        site = operation(self.get_object(), actor=self.request.user)
        return converged_response(self.get_serializer(self._reload(reconcile.converge_now(site))))

    @extend_schema(request=None, responses={200: s.SiteSerializer, 202: s.SiteSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, *args, **kwargs):
        """Start. 200 when the engine ran it within RECONCILE_WAIT_SECONDS, else 202 with
        `reconcile_status` pending (a worker finishes it) or failed (`reconcile_error`)."""
        return self._act(services.start_site)

    @extend_schema(request=None, responses={200: s.SiteSerializer, 202: s.SiteSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, *args, **kwargs):
        """Stop: 200 when done, 202 when pending or failed (see start)."""
        return self._act(services.stop_site)

    @extend_schema(request=None, responses={200: s.SiteSerializer, 202: s.SiteSerializer})
    @action(detail=True, methods=["post"])
    def restart(self, request, *args, **kwargs):
        """Restart; a site whose image, command, port or env changed gets a new container."""
        return self._act(services.restart_site)

    @extend_schema(
        parameters=[s.RuntimeLogQuerySerializer],
        responses={200: s.RuntimeLogSerializer, 503: OpenApiResponse(description="Engine down.")},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def logs(self, request, *args, **kwargs):
        """What the serving container prints (stdout and stderr), for tail and follow: the
        last `tail` lines, then call again with `after=cursor` for newer ones only."""
        query = s.RuntimeLogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        site = self.get_object()
        container = current_container(site)
        after = query.validated_data["after"]
        if container is None:
            return Response({"container": None, "lines": [], "cursor": after})
        with engine.call_timeout(settings.RUNTIME_LOG_TIMEOUT_SECONDS):
            lines = engine.runtime_logs(
                site.host, container.docker_id, tail=query.validated_data["tail"], after_ns=after
            )
        return Response(
            {
                "container": container.name,
                "lines": [{"at": ns_to_datetime(at), "text": text} for at, text in lines],
                "cursor": lines[-1][0] if lines else after,
            }
        )

    @extend_schema(
        responses={
            (200, "application/x-tar"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="A tar archive of /data, streamed."
            ),
            404: OpenApiResponse(description="No such site, or it has no /data volume."),
            503: OpenApiResponse(description="Engine down."),
        },
        filters=False,
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="volume-archive",
        filter_backends=[],
        pagination_class=None,
    )
    def volume_archive(self, request, *args, **kwargs):
        """The site's /data volume as a tar archive (admins; tokens need secrets:read),
        streamed from the engine as it is read; the download is audited."""
        site = self.get_object()
        stream = volumes.archive(site, actor=request.user)
        response = StreamingHttpResponse(stream, content_type="application/x-tar")
        stamp = datetime.now(tz=UTC).strftime("%Y%m%d-%H%M%S")
        name = f"{site.organization.slug}-{site.slug}-data-{stamp}.tar"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @extend_schema(request=None, responses={201: s.TerminalTicketSerializer})
    @action(detail=True, methods=["post"])
    def terminal(self, request, *args, **kwargs):
        """A single-use ticket (TERMINAL_TICKET_SECONDS) for a shell in the site's serving
        container, for the signed-in caller only: open `url` (a WebSocket) from the panel's
        page and send `{"ticket": ...}` first. Who may is the organization's
        `terminal_access` (admins and owners unless its owners chose otherwise)."""
        ticket, raw = terminals.issue_ticket(self.get_object(), user=request.user)
        body = {
            "ticket": raw,
            "url": settings.TERMINAL_URL,
            "expires_at": ticket.expires_at,
            "container": ticket.container_name,
        }
        return Response(s.TerminalTicketSerializer(body).data, status=status.HTTP_201_CREATED)


def ns_to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).replace(
        microsecond=(ns % 1_000_000_000) // 1000
    )


def converged_response(serializer) -> Response:
    """200 when the engine caught up with the change, 202 when it is pending or failed."""
    converged = serializer.instance.reconcile_status == ReconcileStatus.CONVERGED
    return Response(serializer.data, status=status.HTTP_200_OK if converged else 202)


class SiteScopedMixin(OrganizationScopedMixin):
    """Resolves `{site_slug}` inside the organization once; a deleted site is a 404."""

    site: Site

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if getattr(self, "swagger_fake_view", False):
            return
        site = (
            Site.objects.for_user(request.user, request_token(request))
            .alive()
            .filter(organization=self.organization, slug=kwargs["site_slug"])
            .select_related("organization", "host")
            .first()
        )
        if site is None:
            raise Http404
        self.site = site

    def get_queryset(self):
        qs = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return qs
        return qs.filter(site=self.site)


class ResourceLimitViewSet(SiteScopedMixin, viewsets.GenericViewSet):
    """The site's resource limits. Admins change them; a running container gets them live."""

    queryset = ResourceLimit.objects.all()
    serializer_class = s.ResourceLimitSerializer
    pagination_class = None
    filter_backends: list = []
    minimum_roles = {"partial_update": Role.ADMIN}

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_queryset().get()).data)

    @extend_schema(responses={200: s.ResourceLimitSerializer, 202: s.ResourceLimitSerializer})
    def partial_update(self, request, *args, **kwargs):
        """Change limits: 200 when the engine applied them within RECONCILE_WAIT_SECONDS, 202
        when they wait for it (the site's `reconcile_status` says pending or failed)."""
        limits = self.get_queryset().get()
        serializer = self.get_serializer(limits, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        limits = services.update_limits(self.site, actor=request.user, **serializer.validated_data)
        site = reconcile.converge_now(self.site)
        limits.refresh_from_db()
        code = status.HTTP_200_OK if site.reconcile_status == ReconcileStatus.CONVERGED else 202
        return Response(self.get_serializer(limits).data, status=code)


class DomainViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    SiteScopedMixin,
    viewsets.GenericViewSet,
):
    """Custom domains of a site (admins manage). Verify with a TXT record, then POST verify/."""

    queryset = Domain.objects.all()
    serializer_class = s.DomainSerializer
    filterset_class = DomainFilterSet
    ordering_fields = ["hostname", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    minimum_roles = {
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "verify": Role.ADMIN,
    }

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        domain = services.add_domain(self.site, actor=request.user, **serializer.validated_data)
        return Response(self.get_serializer(domain).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = services.update_domain(
            serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.remove_domain(instance, actor=self.request.user)

    @extend_schema(request=None, responses=s.DomainSerializer)
    @action(detail=True, methods=["post"])
    def verify(self, request, *args, **kwargs):
        domain = services.verify_domain(self.get_object(), actor=request.user, resolver=resolve_txt)
        return Response(self.get_serializer(domain).data)


class PortForwardViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    SiteScopedMixin,
    viewsets.GenericViewSet,
):
    """TCP ports of the site's container published on its host's public address (admins
    manage, within the organization's max_port_forwards). Adding or removing one restarts a
    running site with a container that publishes the new set."""

    queryset = PortForward.objects.select_related("host")
    serializer_class = s.PortForwardSerializer
    filterset_class = PortForwardFilterSet
    ordering_fields = ["public_port", "container_port", "created_at"]
    http_method_names = ["get", "post", "delete", "head", "options"]
    minimum_roles = {"create": Role.ADMIN, "destroy": Role.ADMIN}

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        forward = forwards.add(self.site, actor=request.user, **serializer.validated_data)
        reconcile.converge_now(self.site)
        return Response(self.get_serializer(forward).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        forwards.remove(instance, actor=self.request.user)
        reconcile.converge_now(self.site)


class EnvironmentVariableViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    SiteScopedMixin,
    viewsets.GenericViewSet,
):
    """Environment variables. Secret values are masked unless the token has `secrets:read`.

    Changes apply at the next restart (the site shows `needs_restart`).
    """

    queryset = EnvironmentVariable.objects.all()
    serializer_class = s.EnvironmentVariableSerializer
    minimum_roles = {"reveal": Role.ADMIN}
    required_scopes = {"reveal": Scope.SECRETS_READ}
    filterset_class = EnvironmentVariableFilterSet
    ordering_fields = ["key", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        var = services.set_env(self.site, actor=request.user, **serializer.validated_data)
        return Response(self.get_serializer(var).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        data.pop("key", None)
        serializer.instance = services.update_env(
            serializer.instance, actor=self.request.user, **data
        )

    def perform_destroy(self, instance):
        services.delete_env(instance, actor=self.request.user)

    @extend_schema(request=None, responses={200: s.EnvironmentVariableRevealSerializer})
    @action(detail=True, methods=["post"])
    def reveal(self, request, *args, **kwargs):
        """A secret's value, for the site's admins (a token also needs `secrets:read`); each
        reveal is audited (which variable, never the value)."""
        var = self.get_object()
        value = services.reveal_env(var, actor=request.user)
        return Response({"id": var.pk, "key": var.key, "value": value})


class ShareLinkViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    SiteScopedMixin,
    viewsets.GenericViewSet,
):
    """Share links of a private site (admins): the token is shown once, by create; DELETE
    revokes. Holders see the site until the link expires."""

    queryset = ShareLink.objects.select_related("created_by")
    serializer_class = s.ShareLinkSerializer
    filter_backends: list = []
    minimum_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    @extend_schema(responses={201: s.ShareLinkCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        link, token = services.create_share_link(
            self.site, actor=request.user, **serializer.validated_data
        )
        data = dict(s.ShareLinkCreatedSerializer(link).data)
        data["token"] = token
        data["url"] = (
            f"{self.site.url}?{services.SHARE_TOKEN_PARAM}={token}" if self.site.url else None
        )
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.revoke_share_link(instance, actor=self.request.user)


class ContainerViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, SiteScopedMixin, viewsets.GenericViewSet
):
    """Containers Docker reports for this site (kept in step by the sync worker)."""

    queryset = Container.objects.select_related("host")
    serializer_class = s.ContainerSerializer
    filterset_class = ContainerFilterSet
    ordering_fields = ["created", "name", "state"]

    def get_queryset(self):
        # Containers reach their organization through the site, which the mixin fixed.
        if getattr(self, "swagger_fake_view", False):
            return Container.objects.none()
        return self.queryset.for_user(self.request.user, request_token(self.request)).filter(
            site=self.site
        )


class QuotaViewSet(OrganizationScopedMixin, viewsets.GenericViewSet):
    """The organization's quota and current use (staff change quotas)."""

    serializer_class = s.QuotaSerializer
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self):  # no list: one quota per organization
        return Site.objects.none()

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(services.quota_for(self.organization)).data)


class SiteTemplateViewSet(viewsets.ReadOnlyModelViewSet):
    """Blueprints staff offer for new sites."""

    queryset = SiteTemplate.objects.filter(is_active=True)
    serializer_class = s.SiteTemplateSerializer
    filterset_class = SiteTemplateFilterSet
    ordering_fields = ["name"]
    lookup_field = "slug"


class DockerHostViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Staff only: the Docker engines sites run on."""

    queryset = DockerHost.objects.all()
    serializer_class = s.DockerHostSerializer
    permission_classes = [IsStaff]
    filterset_class = DockerHostFilterSet
    ordering_fields = ["name", "status", "last_seen_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        host = services.create_host(actor=request.user, **serializer.validated_data)
        return Response(self.get_serializer(host).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = services.update_host(
            serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    @extend_schema(request=None, responses=s.DockerHostSerializer)
    @action(detail=True, methods=["post"])
    def ping(self, request, *args, **kwargs):
        host = services.ping_host(self.get_object(), actor=request.user)
        return Response(self.get_serializer(host).data)
