"""Staff admin for hosting. Every write goes through hosting.services, so it is audited.

Tenants manage their sites, domains and variables through the API; here staff look, manage
hosts, quotas, templates and limits, and run site actions. A service's refusal or a Docker
engine's failure is shown as an error message, never as a server error, and a change the
service refused is never reported as saved. Secret variable values (plain or encrypted) are
never rendered.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.models import Organization
from hosting import deployments, discovery, moves, queue, reconcile, services, ssh
from hosting import docker as engine
from hosting.models import (
    Container,
    Deployment,
    DeploymentTrigger,
    DiscoveredHost,
    DockerHost,
    Domain,
    EnvironmentVariable,
    HostStatus,
    OrganizationQuota,
    ReconcileStatus,
    ResourceLimit,
    Site,
    SiteTemplate,
)
from hostpanel import crypto
from hostpanel.admin_kit import ReadOnly, ReadOnlyInline, ServiceModelAdmin, refusal_message

# What a hosting service may raise that is the user's or an engine's problem, not a bug.
ENGINE_ERRORS = (
    engine.HostUnavailable,
    engine.HostError,
    engine.SpecRejected,
    services.NoHostAvailable,
    crypto.DecryptionError,
)
REFUSALS = (ValidationError, PermissionDenied, *ENGINE_ERRORS)


class HostingAdmin(ServiceModelAdmin):
    """Base of the hosting admins: writes by services; engine failures are refusals too."""

    refusals = REFUSALS

    def describe(self, exc: Exception) -> str:
        if isinstance(exc, engine.SpecRejected):
            return f"Docker host {exc.host.name} rejected the request: {exc.reason}"
        return refusal_message(exc)


class ViewOnlyAdmin(ReadOnly, HostingAdmin):
    """Rows made by tenants (the API) or by Docker: staff look, and use the actions."""


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# --- Docker hosts -------------------------------------------------------------------------


@admin.register(DockerHost)
class DockerHostAdmin(HostingAdmin):
    list_display = (
        "name",
        "endpoint",
        "status",
        "engine_version",
        "cpus",
        "memory",
        "last_seen_at",
        "site_count",
        "draining",
    )
    list_filter = ("status", "draining")
    search_fields = ("name", "endpoint")
    actions = ("ping_hosts", "drain_hosts", "undrain_hosts")
    readonly_fields = (
        "live_sites",
        "engine_version",
        "cpus",
        "memory",
        "storage_driver",
        "supports_disk_quota",
        "last_seen_at",
        "last_error",
        "proxy_synced_at",
        "proxy_error",
        "worker_name",
        "worker_heartbeat_at",
        "site_count",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "endpoint", "status", "draining", "network_mode", "labels")}),
        (
            "Addresses",
            {"fields": ("address", "public_address")},
        ),
        (
            "TLS (tcp:// endpoints)",
            {"fields": ("tls_ca_cert", "tls_client_cert", "tls_client_key")},
        ),
        ("SSH (ssh:// endpoints)", {"fields": ("ssh_host_key",)}),
        (
            "Proxy (this host's Caddy, which routes its sites)",
            {
                "fields": (
                    "proxy_admin",
                    "proxy_listen",
                    "proxy_http_port",
                    "proxy_https_port",
                    "proxy_access_log",
                )
            },
        ),
        (
            "Reported by the engine (use the “Check” action to refresh)",
            {"fields": readonly_fields},
        ),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(site_count=Count("sites", filter=Q(sites__deleted_at__isnull=True)))
        )

    def get_fieldsets(self, request, obj=None):
        return self.fieldsets[:5] if obj is None else self.fieldsets

    @admin.display(description="sites here")
    def live_sites(self, obj):
        """What a draining host still runs (each to be moved or deleted)."""
        sites = Site.objects.alive().filter(host=obj).select_related("organization")[:200]
        if not sites:
            return "—"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:hosting_site_change", args=[s.pk]), str(s)) for s in sites),
        )

    @admin.action(description="Drain selected hosts (no new sites)", permissions=["change"])
    def drain_hosts(self, request, queryset):
        self._set_draining(request, queryset, True)

    @admin.action(description="Stop draining selected hosts", permissions=["change"])
    def undrain_hosts(self, request, queryset):
        self._set_draining(request, queryset, False)

    def _set_draining(self, request, queryset, draining: bool) -> None:
        done = (
            "Draining {count} host(s): no new site goes there; each host's page lists its sites."
            if draining
            else "{count} host(s) take new sites again."
        )
        self.run_each(
            request,
            queryset,
            lambda host: services.update_host(host, actor=request.user, draining=draining),
            done,
        )

    @admin.display(description="memory", ordering="memory_bytes")
    def memory(self, obj):
        return filesizeformat(obj.memory_bytes) if obj.memory_bytes else "—"

    @admin.display(description="sites", ordering="site_count")
    def site_count(self, obj):
        return getattr(obj, "site_count", 0)

    def has_delete_permission(self, request, obj=None):
        # Sites hold their host (PROTECT) and there is no audited service that removes a
        # host: take a host out of use by setting it to maintenance.
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with self.service_call():
            if not change:
                fields = {name: data[name] for name in services.HOST_FIELDS if name in data}
                host = services.create_host(actor=request.user, **fields)
                obj.pk = host.pk
            else:
                changed = {
                    name: data[name] for name in form.changed_data if name in services.HOST_FIELDS
                }
                if changed:
                    services.update_host(
                        DockerHost.objects.get(pk=obj.pk), actor=request.user, **changed
                    )
        obj.refresh_from_db()

    @admin.action(description="Check (ping) selected hosts", permissions=["change"])
    def ping_hosts(self, request, queryset):
        for host in queryset:
            try:
                host = services.ping_host(host, actor=request.user)
            except REFUSALS as exc:
                self.message_user(request, f"{host}: {self.describe(exc)}", messages.ERROR)
                continue
            text = f"{host}: {host.get_status_display().lower()}"
            if host.status == HostStatus.ONLINE:
                self.message_user(
                    request, f"{text}, Docker {host.engine_version}", messages.SUCCESS
                )
            else:
                if host.last_error:
                    text = f"{text} — {host.last_error}"
                level = messages.ERROR if host.status == HostStatus.OFFLINE else messages.WARNING
                self.message_user(request, text, level)


# --- sites --------------------------------------------------------------------------------


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("no", "No"), ("yes", "Yes")]

    def queryset(self, request, queryset):
        match self.value():
            case "no":
                return queryset.filter(deleted_at__isnull=True)
            case "yes":
                return queryset.filter(deleted_at__isnull=False)
        return queryset


class LimitsInline(ReadOnlyInline):
    model = ResourceLimit
    fields = services.LIMIT_FIELDS
    readonly_fields = fields
    verbose_name_plural = "resource limits (change them in Resource limits)"


class DomainInline(ReadOnlyInline):
    model = Domain
    fields = services.DOMAIN_FIELDS
    readonly_fields = fields


class EnvironmentVariableInline(ReadOnlyInline):
    """Keys only: a value is never shown here, secret or not, plain or encrypted."""

    model = EnvironmentVariable
    fields = ("key", "is_secret", "updated_at")
    readonly_fields = fields
    exclude = ("value",)
    verbose_name_plural = "environment variables (values are not shown)"


class ContainerInline(ReadOnlyInline):
    model = Container
    fields = ("name", "host", "image", "state", "status", "last_seen_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("host")


@admin.register(Site)
class SiteAdmin(ViewOnlyAdmin):
    list_display = (
        "organization",
        "slug",
        "name",
        "site_type",
        "host",
        "desired_state",
        "observed_state",
        "reconcile_status",
        "needs_restart",
        "deleted",
        "created_at",
    )
    list_filter = (
        "site_type",
        "desired_state",
        "observed_state",
        "reconcile_status",
        "host",
        DeletedFilter,
    )
    search_fields = ("slug", "name", "organization__slug")
    list_select_related = ("organization", "host")
    fieldsets = (
        (None, {"fields": ("organization", "name", "slug", "subdomain", "site_type")}),
        (
            "Build and run",
            {
                "fields": (
                    "template",
                    "image",
                    "repository_url",
                    "branch",
                    "build_command",
                    "start_command",
                    "internal_port",
                    "health_check_path",
                )
            },
        ),
        (
            "State",
            {
                "fields": (
                    "host",
                    "desired_state",
                    "observed_state",
                    "reconcile_status",
                    "reconcile_error",
                    "reconciled_at",
                    "needs_restart",
                    "deleted_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = tuple(name for _, opts in fieldsets for name in opts["fields"])
    inlines = (LimitsInline, DomainInline, EnvironmentVariableInline, ContainerInline)
    actions = ("start_sites", "stop_sites", "restart_sites", "move_sites", "delete_sites")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("organization", "host", "template")

    @admin.action(description="Move selected sites to another host", permissions=["operate"])
    def move_sites(self, request, queryset):
        """Two steps: pick the host (a page), then each move is requested (hosting/moves.py)
        and a worker carries it out."""
        hosts = DockerHost.objects.filter(status=HostStatus.ONLINE, draining=False)
        chosen = request.POST.get("target_host")
        if not chosen:
            return TemplateResponse(
                request,
                "admin/hosting/site/move_sites.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Move sites to another host",
                    "sites": queryset.select_related("organization", "host"),
                    "hosts": hosts.order_by("name"),
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "forward_hours": settings.MOVE_FORWARD_HOURS,
                    "opts": self.model._meta,
                },
            )
        target = hosts.filter(pk=chosen).first() if _is_uuid(chosen) else None
        if target is None:
            self.message_user(request, "That host cannot take sites.", messages.ERROR)
            return None
        self.run_each(
            request,
            queryset.select_related("organization", "host"),
            lambda site: moves.request_move(site, target, actor=request.user),
            f"Moving {{count}} site(s) to {target.name}; a worker carries it out.",
        )
        return None

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def deleted(self, obj):
        return obj.deleted_at is not None

    def has_operate_permission(self, request):
        """Starting, stopping and restarting change the site."""
        return request.user.has_perm("hosting.change_site")

    def has_soft_delete_permission(self, request):
        return request.user.has_perm("hosting.delete_site")

    def _act(self, request, queryset, service, done_message):
        """The change is recorded by the service; the engine follows (inline, bounded), and
        a site it could not reach yet is named with the engine's reason."""
        waiting: list[Site] = []

        def change(site):
            site = reconcile.converge_now(service(site, actor=request.user))
            if site.reconcile_status != ReconcileStatus.CONVERGED:
                waiting.append(site)

        self.run_each(
            request, queryset.select_related("organization", "host"), change, done_message
        )
        for site in waiting:
            self.message_user(
                request,
                f"{site}: {site.reconcile_status}: {site.reconcile_error} "
                "(recorded; the engine follows when it answers)",
                messages.WARNING,
            )

    @admin.action(description="Start selected sites", permissions=["operate"])
    def start_sites(self, request, queryset):
        self._act(request, queryset, services.start_site, "Started {count} site(s).")

    @admin.action(description="Stop selected sites", permissions=["operate"])
    def stop_sites(self, request, queryset):
        self._act(request, queryset, services.stop_site, "Stopped {count} site(s).")

    @admin.action(description="Restart selected sites", permissions=["operate"])
    def restart_sites(self, request, queryset):
        self._act(request, queryset, services.restart_site, "Restarted {count} site(s).")

    @admin.action(
        description="Delete selected sites (soft: containers and domains are removed)",
        permissions=["soft_delete"],
    )
    def delete_sites(self, request, queryset):
        self._act(request, queryset, services.delete_site, "Deleted {count} site(s).")


# --- limits and quotas --------------------------------------------------------------------


@admin.register(ResourceLimit)
class ResourceLimitAdmin(HostingAdmin):
    """One row per site, made with the site. Changes go to running containers in place."""

    list_display = ("site", "organization", *services.LIMIT_FIELDS)
    search_fields = ("site__slug", "site__name", "organization__slug")
    list_select_related = ("site__organization", "organization")
    fields = ("site", "organization", *services.LIMIT_FIELDS, "created_at", "updated_at")
    readonly_fields = ("site", "organization", "created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("site__organization", "organization")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        changed = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in services.LIMIT_FIELDS
        }
        if changed:
            with self.service_call():
                services.update_limits(
                    Site.objects.get(pk=obj.site_id), actor=request.user, **changed
                )
            # The admin's form runs in a transaction: the engine is a worker's, after it.
            site_id = str(obj.site_id)
            transaction.on_commit(lambda: queue.send("reconcile_site", site_id))
        obj.refresh_from_db()


@admin.register(OrganizationQuota)
class OrganizationQuotaAdmin(HostingAdmin):
    list_display = ("organization", *services.QUOTA_FIELDS)
    list_filter = ("over_limit_policy",)
    search_fields = ("organization__slug", "organization__name")
    list_select_related = ("organization",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("organization", *services.QUOTA_FIELDS)
        return ("organization", *services.QUOTA_FIELDS, "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("organization", "created_at", "updated_at")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            # An organization has one quota: offer only those without one yet.
            kwargs["queryset"] = Organization.objects.filter(quota__isnull=True).order_by("name")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # every organization has a quota; change it instead

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        names = (
            services.QUOTA_FIELDS
            if not change
            else [n for n in form.changed_data if n in services.QUOTA_FIELDS]
        )
        fields = {name: data[name] for name in names}
        org = Organization.objects.get(pk=obj.organization_id)
        if fields or not change:
            with self.service_call():
                services.update_quota(org, actor=request.user, **fields)
        obj.refresh_from_db()


# --- templates ----------------------------------------------------------------------------


@admin.register(SiteTemplate)
class SiteTemplateAdmin(HostingAdmin):
    list_display = ("name", "slug", "site_type", "image", "is_active")
    list_filter = ("site_type", "is_active")
    search_fields = ("name", "slug", "image")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")

    def has_delete_permission(self, request, obj=None):
        return False  # sites keep a link to their template: deactivate it instead

    def save_model(self, request, obj, form, change):
        with self.service_call():
            services.save_template(obj, actor=request.user)


# --- domains, variables, containers ---------------------------------------------------------


@admin.register(Domain)
class DomainAdmin(HostingAdmin):
    """Tenants add domains through the API; staff may change the flags or remove one."""

    list_display = (
        "hostname",
        "site",
        "organization",
        "is_primary",
        "ssl_enabled",
        "is_cloudflare",
        "verified_at",
    )
    list_filter = ("is_primary", "ssl_enabled", "is_cloudflare")
    search_fields = ("hostname",)
    list_select_related = ("site__organization", "organization")
    fields = (
        "hostname",
        "site",
        "organization",
        "is_primary",
        "ssl_enabled",
        "is_cloudflare",
        "txt_record_name",
        "verification_token",
        "verified_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = (
        "hostname",
        "site",
        "organization",
        "txt_record_name",
        "verification_token",
        "verified_at",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("site__organization", "organization")

    @admin.display(description="TXT record")
    def txt_record_name(self, obj):
        return obj.txt_record_name

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        editable = ("is_primary", "ssl_enabled", "is_cloudflare")
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in editable}
        if changed:
            with self.service_call():
                services.update_domain(Domain.objects.get(pk=obj.pk), actor=request.user, **changed)
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        with self.service_call():
            services.remove_domain(obj, actor=request.user)


@admin.register(EnvironmentVariable)
class EnvironmentVariableAdmin(ViewOnlyAdmin):
    """Keys and flags only. The value field is left out entirely, secret or not."""

    list_display = ("site", "key", "is_secret", "updated_at")
    list_filter = ("is_secret",)
    search_fields = ("key", "site__slug", "organization__slug")
    list_select_related = ("site__organization",)
    fields = ("site", "organization", "key", "is_secret", "created_at", "updated_at")
    readonly_fields = fields
    exclude = ("value",)
    actions = None

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("site__organization", "organization")


@admin.register(DiscoveredHost)
class DiscoveredHostAdmin(ViewOnlyAdmin):
    """Candidates from the discovery providers (found every HOST_DISCOVERY_INTERVAL_SECONDS,
    or by `manage.py discover_hosts`). Approving one enrols a tcp:// engine with the panel's
    CA (its files go to HOST_CA_DIR/bundles/<name>/; it stays pending until trust_host with
    the code) or adds an ssh:// one; nothing else can be approved."""

    actions = ("approve_hosts",)
    list_display = ("name", "endpoint", "source", "last_seen_at", "approved_at", "host")
    list_filter = ("source",)
    search_fields = ("name", "endpoint", "external_id")
    list_select_related = ("host",)
    fields = ("name", "endpoint", "address", "source", "external_id", "first_seen_at",
              "last_seen_at", "approved_at", "host")  # fmt: skip

    def has_approve_permission(self, request):
        return request.user.has_perm("hosting.add_dockerhost")

    @admin.action(description="Approve selected hosts", permissions=["approve"])
    def approve_hosts(self, request, queryset):
        for row in queryset:
            bundle = Path(settings.HOST_CA_DIR) / "bundles" / row.name
            try:
                host, code = discovery.approve(row, actor=request.user, bundle_dir=bundle)
            except ValidationError as exc:
                self.message_user(request, f"{row}: {'; '.join(exc.messages)}", messages.ERROR)
                continue
            if code:
                self.message_user(
                    request,
                    f"{host}: enrolled, pending trust. Copy {bundle} to the host, start dockerd "
                    f"with it, then run trust_host {host.name} {code} (the code must match "
                    "the certificate's fingerprint read on the host).",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{host}: added ({host.endpoint}), pending trust. Put the panel's key "
                    f"({ssh.panel_public_key()}) in the docker-group user's authorized_keys, "
                    f"then run trust_host {host.name} SHA256:… with the fingerprint "
                    "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints on the host.",
                    messages.SUCCESS,
                )


@admin.register(Container)
class ContainerAdmin(ViewOnlyAdmin):
    """What the engines report; the panel's containers are changed through site actions."""

    list_display = ("host", "site", "name", "image", "state", "status", "last_seen_at")
    list_filter = ("host", "state")
    search_fields = ("name", "docker_id", "image", "site__slug")
    list_select_related = ("host", "site__organization")
    fields = (
        "host",
        "site",
        "docker_id",
        "name",
        "image",
        "state",
        "status",
        "labels",
        "ports",
        "created",
        "last_seen_at",
    )
    readonly_fields = fields
    actions = None

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("host", "site__organization")


# --- deployments ----------------------------------------------------------------------------

LOG_TAIL_BYTES = 20 * 1024


@admin.register(Deployment)
class DeploymentAdmin(ViewOnlyAdmin):
    """Deployments are requested by tenants, webhooks or the “Redeploy” action; read-only here.

    The page shows the end of the log. The configuration snapshot is summarised: variable
    names only, never values (secret ones are encrypted, plain ones are the tenant's)."""

    list_display = (
        "site",
        "number",
        "status",
        "trigger",
        "short_commit",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "trigger")
    search_fields = ("site__slug", "organization__slug", "commit_hash", "branch")
    list_select_related = ("site__organization",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "site",
                    "organization",
                    "number",
                    "status",
                    "trigger",
                    "triggered_by",
                    "token_id",
                    "rollback_of",
                    "error",
                    "cancel_requested",
                )
            },
        ),
        (
            "Source and image",
            {
                "fields": (
                    "branch",
                    "commit_hash",
                    "commit_message",
                    "image_tag",
                    "image_id",
                    "build_time_seconds",
                    "configuration",
                )
            },
        ),
        (
            "Progress",
            {
                "fields": (
                    "created_at",
                    "started_at",
                    "finished_at",
                    "heartbeat_at",
                    "worker",
                    "transition_list",
                )
            },
        ),
        ("Log", {"fields": ("log_size", "log_archived_at", "log_tail")}),
    )
    readonly_fields = tuple(name for _, opts in fieldsets for name in opts["fields"])
    actions = ("cancel_deployments", "redeploy")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related(
                "site__organization",
                "organization",
                "triggered_by",
                "rollback_of__site__organization",
            )
        )

    def has_operate_permission(self, request):
        return request.user.has_perm("hosting.change_deployment")

    def has_redeploy_permission(self, request):
        return request.user.is_staff and request.user.has_perm("hosting.add_deployment")

    @admin.display(description="commit", ordering="commit_hash")
    def short_commit(self, obj):
        return obj.commit_hash[:12] or "—"

    @admin.display(description="transitions")
    def transition_list(self, obj):
        rows = [(t.get("status", "?"), t.get("at", "")) for t in obj.transitions or []]
        if not rows:
            return "—"
        return format_html("<pre>{}</pre>", "\n".join(f"{at}  {status}" for status, at in rows))

    @admin.display(description="configuration snapshot")
    def configuration(self, obj):
        snapshot = obj.config_snapshot or {}
        if not snapshot:
            return "—"
        lines = [f"{k}: {v}" for k, v in (snapshot.get("site") or {}).items()]
        lines += [f"limits.{k}: {v}" for k, v in (snapshot.get("limits") or {}).items()]
        keys = [
            f"{var.get('key')}{' (secret)' if var.get('is_secret') else ''}"
            for var in snapshot.get("env") or []
        ]
        lines.append(f"env: {', '.join(keys) or '—'} (values are not shown)")
        return format_html("<pre>{}</pre>", "\n".join(lines))

    @admin.display(description=f"log (last {LOG_TAIL_BYTES // 1024} KB)")
    def log_tail(self, obj):
        parts, size = [], 0
        for text in obj.chunks.order_by("-offset").values_list("text", flat=True).iterator():
            parts.append(text)
            size += len(text.encode())
            if size >= LOG_TAIL_BYTES:
                break
        text = "".join(reversed(parts))
        encoded = text.encode()
        cut = len(encoded) > LOG_TAIL_BYTES
        if cut:
            text = encoded[-LOG_TAIL_BYTES:].decode(errors="ignore")
        first = obj.chunks.order_by("offset").values_list("offset", flat=True).first()
        if cut or (first or 0) > 0:
            text = "… earlier output not shown …\n" + text
        if not text:
            return "—"
        return format_html(
            '<pre style="max-height:40em;overflow:auto;white-space:pre-wrap">{}</pre>', text
        )

    @admin.action(description="Cancel selected deployments", permissions=["operate"])
    def cancel_deployments(self, request, queryset):
        self.run_each(
            request,
            queryset.select_related("site__organization"),
            lambda deployment: deployments.cancel(deployment, actor=request.user),
            "Cancelled or asked to cancel {count} deployment(s).",
        )

    @admin.action(
        description="Redeploy (a new deployment of the site's branch)", permissions=["redeploy"]
    )
    def redeploy(self, request, queryset):
        # One new deployment per site and branch, however many of its rows were ticked.
        wanted: dict[tuple, Deployment] = {}
        for deployment in queryset.select_related("site__organization", "site__host"):
            wanted.setdefault((deployment.site_id, deployment.branch), deployment)
        self.run_each(
            request,
            wanted.values(),
            lambda deployment: deployments.request_deployment(
                deployment.site,
                actor=request.user,
                trigger=DeploymentTrigger.STAFF,
                branch=deployment.branch,
            ),
            "Queued {count} new deployment(s).",
        )
