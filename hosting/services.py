"""Every state change of hosting: validates, writes in one transaction, records the audit entry.

No engine call happens inside a transaction. A change to what a site should be (state,
limits, deletion) is written with the audit entry and a bumped `Site.generation`; the
reconciler (`hosting/reconcile.py`) then brings the engine to it after the commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.text import slugify

from accounts import secrets as creds
from accounts.models import Membership, Organization, User
from audit import actions
from audit.services import diff, record, snapshot
from hosting import docker as engine
from hosting import git, placement, queue, runtime
from hosting.models import (
    DesiredState,
    DockerHost,
    Domain,
    EnvironmentVariable,
    HostStatus,
    ObservedState,
    OrganizationQuota,
    ReconcileStatus,
    ResourceLimit,
    ShareLink,
    Site,
    SiteTemplate,
    SiteType,
    VisitPass,
)
from hosting.runtime import (
    NoHostAvailable,
    current_container,
    serving_containers,
    site_environment,
)
from hostpanel import crypto

__all__ = ["NoHostAvailable", "current_container", "serving_containers", "site_environment"]

SITE_FIELDS = (
    "name",
    "is_private",
    "sleep_after_minutes",
    "slug",
    "site_type",
    "image",
    "repository_url",
    "branch",
    "build_command",
    "start_command",
    "internal_port",
    "health_check_path",
    "host",
    "desired_state",
    "deleted_at",
    "persistent_volume",
    "required_labels",
)
EDITABLE_SITE_FIELDS = {
    "name",
    "is_private",
    "sleep_after_minutes",
    "image",
    "repository_url",
    "branch",
    "build_command",
    "start_command",
    "internal_port",
    "health_check_path",
    "persistent_volume",
}
# Fields baked into the container: changing them takes a restart (a new container).
CONTAINER_FIELDS = {"image", "start_command", "internal_port", "persistent_volume"}
LIMIT_FIELDS = (
    "memory_mb",
    "cpu_percent",
    "disk_mb",
    "bandwidth_mb",
    "requests_per_minute",
    "max_processes",
)
PROXY_FIELDS = {
    "proxy_admin",
    "proxy_listen",
    "proxy_http_port",
    "proxy_https_port",
    "proxy_access_log",
}
QUOTA_FIELDS = (
    "max_sites",
    "max_memory_mb",
    "max_cpu_percent",
    "max_disk_mb",
    "max_port_forwards",
    "over_limit_policy",
)
HOST_FIELDS = (
    "name",
    "endpoint",
    "address",
    "public_address",
    "draining",
    "status",
    "network_mode",
    "labels",
    "tls_ca_cert",
    "tls_client_cert",
    "tls_client_key",
    "ssh_host_key",
    "proxy_admin",
    "proxy_listen",
    "proxy_http_port",
    "proxy_https_port",
    "proxy_access_log",
)


def _full_clean(instance, exclude: Iterable[str] = (), unique_field: str = "") -> None:
    """Model validation; a multi-column constraint's error is put on `unique_field`."""
    try:
        instance.full_clean(exclude=list(exclude), validate_constraints=True)
    except ValidationError as exc:
        errors = exc.message_dict
        if unique_field and NON_FIELD_ERRORS in errors:
            errors.setdefault(unique_field, []).extend(errors.pop(NON_FIELD_ERRORS))
        raise ValidationError(errors) from None


# --- hosts (staff) ------------------------------------------------------------------------


def create_host(*, actor: User | None, **fields) -> DockerHost:
    unknown = set(fields) - set(HOST_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be set."))
    host = DockerHost(**fields)
    _full_clean(host)
    with transaction.atomic():
        host.save()
        record(
            actions.HOST_CREATE,
            actor=actor,
            target=host,
            changes={"after": snapshot(host, HOST_FIELDS)},
        )
    return host


def update_host(host: DockerHost, *, actor: User | None, **fields) -> DockerHost:
    unknown = set(fields) - set(HOST_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    with transaction.atomic():
        host = DockerHost.objects.select_for_update().get(pk=host.pk)
        before = snapshot(host, HOST_FIELDS)
        for name, value in fields.items():
            setattr(host, name, value)
        _full_clean(host)
        host.save()
        changes = diff(before, snapshot(host, HOST_FIELDS))
        if changes["after"]:
            record(actions.HOST_UPDATE, actor=actor, target=host, changes=changes)
        if PROXY_FIELDS & set(changes["after"]) and host.proxy_admin:
            # Its Caddy gets the config with the new listener or log at once, not at the
            # next resync.
            host_id = str(host.pk)
            transaction.on_commit(lambda: queue.send("sync_proxy", host_id), robust=True)
    if {"endpoint", "tls_ca_cert", "tls_client_cert", "tls_client_key", "ssh_host_key"} & set(
        fields
    ):
        engine.forget_client(host)
    return host


def ping_host(host: DockerHost, *, actor: User | None) -> DockerHost:
    """Ask the engine for its facts; an unreachable engine marks the host offline."""
    try:
        info = engine.ping(host)
    except (engine.HostUnavailable, engine.HostError, engine.SpecRejected) as exc:
        mark_host_offline(host, exc.reason, actor=actor)
        host.refresh_from_db()
        return host
    with transaction.atomic():
        host = DockerHost.objects.select_for_update().get(pk=host.pk)
        was = host.status
        host.engine_version = info.version
        host.cpus = info.cpus
        host.memory_bytes = info.memory_bytes
        host.storage_driver = info.storage_driver
        host.supports_disk_quota = info.supports_disk_quota
        host.last_seen_at = timezone.now()
        host.last_error = ""
        if host.status == HostStatus.OFFLINE:
            host.status = HostStatus.ONLINE
        host.save()
        record(
            actions.HOST_ONLINE if was == HostStatus.OFFLINE else actions.HOST_PING,
            actor=actor,
            target=host,
            changes={
                "status": {"before": was, "after": host.status},
                "engine_version": info.version,
            },
        )
    return host


def mark_host_offline(host: DockerHost, reason: str, *, actor: User | None = None) -> None:
    """Record the error; an online host goes offline (audited once, at the change)."""
    with transaction.atomic():
        DockerHost.objects.filter(pk=host.pk).update(last_error=reason[:2000])
        went_offline = DockerHost.objects.filter(pk=host.pk, status=HostStatus.ONLINE).update(
            status=HostStatus.OFFLINE
        )
        if went_offline:
            record(
                actions.HOST_OFFLINE,
                actor=actor,
                target=host,
                changes={"reason": reason[:500]},
            )


# --- quotas and placement ----------------------------------------------------------------


def quota_for(org: Organization, *, lock: bool = False) -> OrganizationQuota:
    """The organization's quota (made with the organization: hosting.apps.create_quota)."""
    quotas = OrganizationQuota.objects.select_for_update() if lock else OrganizationQuota.objects
    quota = quotas.get(organization=org)
    return quota


def usage_of(org: Organization, exclude_site: Site | None = None) -> dict[str, int]:
    sites = Site.objects.filter(organization=org).alive()
    if exclude_site is not None:
        sites = sites.exclude(pk=exclude_site.pk)
    totals = ResourceLimit.objects.filter(site__in=sites).aggregate(
        memory=Coalesce(Sum("memory_mb"), 0),
        cpu=Coalesce(Sum("cpu_percent"), 0),
        disk=Coalesce(Sum("disk_mb"), 0),
    )
    counts = sites.aggregate(sites=Count("pk", distinct=True), forwards=Count("port_forwards"))
    return {
        "sites": counts["sites"],
        "memory_mb": totals["memory"],
        "cpu_percent": totals["cpu"],
        "disk_mb": totals["disk"],
        "port_forwards": counts["forwards"],
    }


def check_quota(org: Organization, *, new_site: bool, limits: ResourceLimit, site=None) -> None:
    """Refuse (400) a change that would take the organization past a quota; say by how much."""
    quota = quota_for(org, lock=True)
    used = usage_of(org, exclude_site=site)
    problems = []
    if new_site and used["sites"] + 1 > quota.max_sites:
        problems.append(f"max_sites is {quota.max_sites}; this would be {used['sites'] + 1}")
    memory = used["memory_mb"] + limits.memory_mb
    if memory > quota.max_memory_mb:
        problems.append(
            f"max_memory_mb is {quota.max_memory_mb}; this would use {memory} "
            f"({memory - quota.max_memory_mb} MB over)"
        )
    cpu = used["cpu_percent"] + limits.cpu_percent
    if cpu > quota.max_cpu_percent:
        problems.append(
            f"max_cpu_percent is {quota.max_cpu_percent}; this would use {cpu} "
            f"({cpu - quota.max_cpu_percent} points over)"
        )
    disk = used["disk_mb"] + limits.disk_mb
    if disk > quota.max_disk_mb:
        problems.append(
            f"max_disk_mb is {quota.max_disk_mb}; this would use {disk} "
            f"({disk - quota.max_disk_mb} MB over)"
        )
    if problems:
        raise ValidationError({"quota": [f"Organization quota exceeded: {p}." for p in problems]})


def update_quota(org: Organization, *, actor: User | None, **fields) -> OrganizationQuota:
    allowed = set(QUOTA_FIELDS)
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    with transaction.atomic():
        quota = quota_for(org, lock=True)
        before = snapshot(quota, sorted(allowed))
        for name, value in fields.items():
            setattr(quota, name, value)
        _full_clean(quota, exclude=["organization"])
        quota.save()
        changes = diff(before, snapshot(quota, sorted(allowed)))
        if changes["after"]:
            record(
                actions.QUOTA_UPDATE, actor=actor, organization=org, target=quota, changes=changes
            )
    return quota


# --- sites ----------------------------------------------------------------------------------


def _validate_site(site: Site) -> None:
    errors: dict[str, str] = {}
    if site.site_type == SiteType.DYNAMIC and not site.image:
        errors["image"] = "A dynamic site needs an image."
    if site.site_type == SiteType.DOCKER and not (site.image or site.repository_url):
        errors["image"] = "A docker site needs an image, or a repository to build one from."
    if site.site_type == SiteType.DYNAMIC and not site.start_command:
        errors["start_command"] = "A dynamic site needs a start command."
    labels = site.required_labels
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        errors["required_labels"] = 'Give host labels as {"name": "value"} strings.'
    if site.health_check_path and not site.health_check_path.startswith("/"):
        errors["health_check_path"] = "Start the path with /."
    if site.repository_url:
        try:
            git.check_url(site.repository_url)
        except git.CloneError as exc:
            errors["repository_url"] = str(exc)
    try:
        git.check_branch(site.branch)
    except git.CloneError as exc:
        errors["branch"] = str(exc)
    if errors:
        raise ValidationError(errors)


def create_site(
    org: Organization,
    *,
    actor: User | None,
    limits: dict[str, int] | None = None,
    template: SiteTemplate | None = None,
    host: DockerHost | None = None,
    **fields,
) -> Site:
    """Create a site (from a template when given), within quota. Its container is the
    reconciler's job, after the commit."""
    if template is not None:
        for name in ("site_type", "image", "build_command", "start_command"):
            fields.setdefault(name, getattr(template, name))
        fields.setdefault("internal_port", template.internal_port)
        fields.setdefault("health_check_path", template.health_check_path)
        limits = {**template.default_limits, **(limits or {})}
    if not fields.get("slug"):
        fields["slug"] = slugify(fields.get("name", ""))[:40]
    site = Site(organization=org, template=template, **fields)
    limit = ResourceLimit(organization=org, site=site, **(limits or {}))
    _full_clean(site, exclude=["host"], unique_field="slug")
    _full_clean(limit, exclude=["site", "organization"])
    _validate_site(site)
    site.host = host or placement.choose_host(
        limit.memory_mb, limit.cpu_percent, site.required_labels
    )
    if site.desired_state == DesiredState.RUNNING and runtime.has_image(site):
        _check_image(site)
    else:
        site.observed_state = ObservedState.STOPPED
    site.generation = 1
    with transaction.atomic():
        check_quota(org, new_site=True, limits=limit)
        try:
            with transaction.atomic():
                site.save()
        except IntegrityError:
            raise ValidationError({"slug": "A site with this slug exists here."}) from None
        limit.site = site
        limit.save()
        record(
            actions.SITE_CREATE,
            actor=actor,
            organization=org,
            target=site,
            changes={
                "after": snapshot(site, SITE_FIELDS),
                "limits": snapshot(limit, LIMIT_FIELDS),
                "template": template.slug if template else None,
            },
        )
    return site


def _check_image(site: Site) -> None:
    """Refuse (400) a site whose image its host does not have, before anything is written.
    An engine that does not answer now is no reason to refuse: the reconciler waits for it."""
    if site.site_type == SiteType.STATIC and not site.image:
        image = settings.HOSTPANEL_STATIC_IMAGE
    else:
        image = site.image
    if not image:
        return
    try:
        engine.image_id(site.host, image)
    except engine.SpecRejected as exc:
        raise ValidationError(
            {"image": f"Image {image} is not on host {site.host.name}: {exc.reason}"}
        ) from None
    except (engine.HostUnavailable, engine.HostError):
        pass


def update_site(site: Site, *, actor: User | None, **fields) -> Site:
    unknown = set(fields) - EDITABLE_SITE_FIELDS
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site.pk)
        before = snapshot(site, SITE_FIELDS)
        for name, value in fields.items():
            setattr(site, name, value)
        _full_clean(site, exclude=["host"], unique_field="slug")
        _validate_site(site)
        changes = diff(before, snapshot(site, SITE_FIELDS))
        if CONTAINER_FIELDS & set(changes["after"]):
            site.needs_restart = True
        site.save()
        if changes["after"]:
            record(
                actions.SITE_UPDATE,
                actor=actor,
                organization=site.organization,
                target=site,
                changes=changes,
            )
    return site


def _want(site: Site, action: str, actor: User | None, **desired: Any) -> None:
    """Record a change of what the site should be, audited, and bump its generation so the
    reconciler knows it has work (inside the caller's transaction)."""
    before = {name: getattr(site, name) for name in desired}
    for name, value in desired.items():
        setattr(site, name, value)
    site.save(update_fields=[*desired, "updated_at"])
    mark_pending(site)
    record(
        action,
        actor=actor,
        organization=site.organization,
        target=site,
        changes={"before": _jsonable(before), "after": _jsonable(desired)},
    )


def mark_pending(site: Site) -> None:
    """The engine has work: a new generation for the reconciler to converge to."""
    Site.objects.filter(pk=site.pk).update(
        generation=F("generation") + 1, reconcile_status=ReconcileStatus.PENDING
    )
    site.refresh_from_db(fields=["generation", "reconcile_status"])


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in values.items()}


def lock_site(site: Site) -> Site:
    site = (
        Site.objects.select_for_update(of=("self",))
        .select_related("organization", "host", "limits")
        .get(pk=site.pk)
    )
    if site.is_deleted:
        raise ValidationError({"site": "This site has been deleted."})
    return site


def start_site(site: Site, *, actor: User | None) -> Site:
    with transaction.atomic():
        site = lock_site(site)
        _want(site, actions.SITE_START, actor, desired_state=DesiredState.RUNNING)
    return site


def put_to_sleep(site: Site) -> bool:
    """An idle site sleeps: its container stops until a visit wakes it (the reconciler
    stops it). False when it is no longer a running, awake site that sleeps."""
    with transaction.atomic():
        site = lock_site(site)
        if (
            site.asleep_since is not None
            or site.desired_state != DesiredState.RUNNING
            or not site.sleep_after_minutes
        ):
            return False
        _want(site, actions.SITE_SLEEP, None, asleep_since=timezone.now())
    return True


def wake_site(site: Site) -> bool:
    """A visit to a sleeping site: the reconciler starts its container again. False when it
    was not asleep (a second visitor, meanwhile)."""
    with transaction.atomic():
        site = lock_site(site)
        if site.asleep_since is None:
            return False
        _want(site, actions.SITE_WAKE, None, asleep_since=None)
    return True


def stop_site(site: Site, *, actor: User | None) -> Site:
    with transaction.atomic():
        site = lock_site(site)
        _want(site, actions.SITE_STOP, actor, desired_state=DesiredState.STOPPED)
    return site


def restart_site(site: Site, *, actor: User | None) -> Site:
    """Restart; a site whose configuration changed gets a new container with it."""
    with transaction.atomic():
        site = lock_site(site)
        _want(
            site,
            actions.SITE_RESTART,
            actor,
            desired_state=DesiredState.RUNNING,
            restart_requested=True,
        )
    return site


def delete_site(site: Site, *, actor: User | None) -> Site:
    """Soft delete (seed 001): the row and its history stay; domains go now, containers when
    the reconciler removes them."""
    with transaction.atomic():
        site = (
            Site.objects.select_for_update(of=("self",))
            .select_related("organization", "host")
            .get(pk=site.pk)
        )
        if site.is_deleted:
            raise ValidationError({"site": "This site is already deleted."})
        released = list(site.domains.values_list("hostname", flat=True))
        site.domains.all().delete()
        ports = list(site.port_forwards.values_list("public_port", flat=True))
        site.port_forwards.all().delete()
        _want(
            site,
            actions.SITE_DELETE,
            actor,
            desired_state=DesiredState.STOPPED,
            deleted_at=timezone.now(),
        )
        if released:
            record(
                actions.DOMAIN_REMOVE,
                actor=actor,
                organization=site.organization,
                target=site,
                changes={"released": released},
            )
        if ports:
            record(
                actions.PORT_FORWARD_REMOVE,
                actor=actor,
                organization=site.organization,
                target=site,
                changes={"released": ports, "host": site.host.name},
            )
    return site


def update_limits(site: Site, *, actor: User | None, **fields) -> ResourceLimit:
    """Change limits within quota; the reconciler gives a container them in place."""
    unknown = set(fields) - set(LIMIT_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    with transaction.atomic():
        site = lock_site(site)
        limits = ResourceLimit.objects.select_for_update().get(site=site)
        before = snapshot(limits, LIMIT_FIELDS)
        for name, value in fields.items():
            setattr(limits, name, value)
        _full_clean(limits, exclude=["site", "organization"])
        check_quota(site.organization, new_site=False, limits=limits, site=site)
        limits.save()
        changes = diff(before, snapshot(limits, LIMIT_FIELDS))
        if changes["after"]:
            record(
                actions.LIMITS_UPDATE,
                actor=actor,
                organization=site.organization,
                target=site,
                changes=changes,
            )
            mark_pending(site)
    return limits


# --- domains ------------------------------------------------------------------------------


def normalize_hostname(hostname: str) -> str:
    return (hostname or "").strip().rstrip(".").lower()


def add_domain(site: Site, *, actor: User | None, hostname: str, **fields) -> Domain:
    hostname = normalize_hostname(hostname)
    base = settings.HOSTPANEL_BASE_DOMAIN
    if hostname == base or hostname.endswith("." + base):
        raise ValidationError({"hostname": f"Names under {base} are the platform's own."})
    with transaction.atomic():
        site = lock_site(site)
        has_any = site.domains.exists()
        domain = Domain(
            organization=site.organization,
            site=site,
            hostname=hostname,
            verification_token=secrets.token_hex(16),
            **fields,
        )
        if not has_any:
            domain.is_primary = True
        _full_clean(domain, exclude=["site", "organization", "is_primary"], unique_field="hostname")
        if domain.is_primary:
            site.domains.filter(is_primary=True).update(is_primary=False)
        try:
            with transaction.atomic():
                domain.save()
        except IntegrityError:
            raise ValidationError({"hostname": "This hostname is already in use."}) from None
        record(
            actions.DOMAIN_ADD,
            actor=actor,
            organization=site.organization,
            target=domain,
            changes={
                "after": snapshot(
                    domain, ("hostname", "is_primary", "ssl_enabled", "is_cloudflare")
                )
            },
        )
    return domain


DOMAIN_FIELDS = (
    "hostname",
    "is_primary",
    "ssl_enabled",
    "tls_mode",
    "is_cloudflare",
    "cloudflare_only",
    "verified_at",
)


def update_domain(domain: Domain, *, actor: User | None, **fields) -> Domain:
    unknown = set(fields) - {
        "is_primary",
        "ssl_enabled",
        "tls_mode",
        "is_cloudflare",
        "cloudflare_only",
    }
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    with transaction.atomic():
        domain = (
            Domain.objects.select_for_update(of=("self",)).select_related("site").get(pk=domain.pk)
        )
        before = snapshot(domain, DOMAIN_FIELDS)
        if fields.get("is_primary") is False and domain.is_primary:
            raise ValidationError(
                {"is_primary": "Make another domain primary instead; a site keeps one."}
            )
        if fields.get("is_primary") and not domain.is_primary:
            domain.site.domains.filter(is_primary=True).update(is_primary=False)
        for name, value in fields.items():
            setattr(domain, name, value)
        domain.save()
        changes = diff(before, snapshot(domain, DOMAIN_FIELDS))
        if changes["after"]:
            record(
                actions.DOMAIN_UPDATE,
                actor=actor,
                organization=domain.organization,
                target=domain,
                changes=changes,
            )
    return domain


def remove_domain(domain: Domain, *, actor: User | None) -> None:
    with transaction.atomic():
        domain = (
            Domain.objects.select_for_update(of=("self",)).select_related("site").get(pk=domain.pk)
        )
        site = domain.site
        record(
            actions.DOMAIN_REMOVE,
            actor=actor,
            organization=domain.organization,
            target=domain,
            changes={"before": snapshot(domain, DOMAIN_FIELDS)},
        )
        was_primary = domain.is_primary
        domain.delete()
        if was_primary:
            successor = site.domains.order_by("created_at").first()
            if successor is not None:
                successor.is_primary = True
                successor.save(update_fields=["is_primary", "updated_at"])


Resolver = Callable[[str], Iterable[str]]


def verify_domain(domain: Domain, *, actor: User | None, resolver: Resolver) -> Domain:
    """Ownership check: `_hostpanel.<hostname>` must carry the domain's token in a TXT record.

    `resolver(name)` returns the TXT strings of a name (injected so tests run offline).
    """
    try:
        records = [str(r).strip().strip('"') for r in resolver(domain.txt_record_name)]
    except Exception as exc:  # resolvers raise many kinds of errors: all mean "not proven"
        raise ValidationError(
            {"hostname": f"DNS lookup of {domain.txt_record_name} failed: {exc}"}
        ) from None
    if domain.verification_token not in records:
        raise ValidationError(
            {
                "hostname": f"No TXT record {domain.txt_record_name} with value "
                f"{domain.verification_token} was found."
            }
        )
    with transaction.atomic():
        domain = Domain.objects.select_for_update().get(pk=domain.pk)
        domain.verified_at = timezone.now()
        domain.save(update_fields=["verified_at", "updated_at"])
        record(actions.DOMAIN_VERIFY, actor=actor, organization=domain.organization, target=domain)
    return domain


# --- environment variables ------------------------------------------------------------------


def _store_value(value: str, is_secret: bool) -> str:
    return crypto.encrypt(value) if is_secret else value


def _env_audit(var: EnvironmentVariable, value_changed: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"key": var.key, "is_secret": var.is_secret}
    if value_changed:
        data["value"] = "[redacted]" if var.is_secret else var.value
    return data


def _mark_needs_restart(site: Site) -> None:
    Site.objects.filter(pk=site.pk).update(needs_restart=True, updated_at=timezone.now())


def set_env(
    site: Site, *, actor: User | None, key: str, value: str, is_secret: bool = False
) -> EnvironmentVariable:
    var = EnvironmentVariable(
        organization=site.organization,
        site=site,
        key=key,
        value=_store_value(value, is_secret),
        is_secret=is_secret,
    )
    _full_clean(var, exclude=["site", "organization"])
    with transaction.atomic():
        try:
            with transaction.atomic():
                var.save()
        except IntegrityError:
            raise ValidationError({"key": "This variable is already set for the site."}) from None
        _mark_needs_restart(site)
        record(
            actions.ENV_SET,
            actor=actor,
            organization=site.organization,
            target=var,
            target_label=key,
            changes={"after": _env_audit(var, True)},
        )
    return var


def update_env(
    var: EnvironmentVariable,
    *,
    actor: User | None,
    value: str | None = None,
    is_secret: bool | None = None,
) -> EnvironmentVariable:
    with transaction.atomic():
        var = EnvironmentVariable.objects.select_for_update().get(pk=var.pk)
        plain = crypto.decrypt(var.value) if var.is_secret else var.value
        was_secret = var.is_secret
        new_plain = plain if value is None else value
        var.is_secret = was_secret if is_secret is None else is_secret
        if was_secret and not var.is_secret:
            raise ValidationError(
                {"is_secret": "A secret cannot be made plain; delete it and set it again."}
            )
        var.value = _store_value(new_plain, var.is_secret)
        var.save()
        _mark_needs_restart(var.site)
        record(
            actions.ENV_UPDATE,
            actor=actor,
            organization=var.organization,
            target=var,
            target_label=var.key,
            changes={"after": _env_audit(var, new_plain != plain)},
        )
    return var


def delete_env(var: EnvironmentVariable, *, actor: User | None) -> None:
    with transaction.atomic():
        record(
            actions.ENV_DELETE,
            actor=actor,
            organization=var.organization,
            target=var,
            target_label=var.key,
            changes={"before": _env_audit(var, False)},
        )
        _mark_needs_restart(var.site)
        var.delete()


def reveal_env_value(var: EnvironmentVariable) -> str:
    return crypto.decrypt(var.value) if var.is_secret else var.value


def reveal_env(var: EnvironmentVariable, *, actor: User | None) -> str:
    """The value, read on purpose (the console's "reveal"): audited, without the value."""
    with transaction.atomic():
        record(
            actions.ENV_REVEAL,
            actor=actor,
            organization=var.organization,
            target=var,
            changes={"key": var.key, "site": var.site.slug},
        )
    return reveal_env_value(var)


def rotate_env_keys(*, actor: User | None = None) -> int:
    """Re-encrypt every secret with the newest key, audited once per organization (how many,
    never which values). Returns how many were rewritten."""
    per_org: dict[Any, list[str]] = {}
    with transaction.atomic():
        secrets_ = EnvironmentVariable.objects.select_for_update().filter(is_secret=True)
        for var in secrets_.select_related("organization"):
            var.value = crypto.rotate(var.value)
            var.save(update_fields=["value"])
            per_org.setdefault(var.organization, []).append(var.key)
        for org, keys in per_org.items():
            record(
                actions.ENV_ROTATE_KEYS,
                actor=actor,
                organization=org,
                target=org,
                changes={"count": len(keys), "keys": sorted(set(keys))},
            )
    return sum(len(keys) for keys in per_org.values())


# --- templates (staff) ------------------------------------------------------------------------

TEMPLATE_FIELDS = (
    "name",
    "slug",
    "site_type",
    "image",
    "start_command",
    "internal_port",
    "default_limits",
    "env_keys",
    "is_active",
)


def save_template(template: SiteTemplate, *, actor: User | None) -> SiteTemplate:
    creating = template._state.adding
    before = {} if creating else snapshot(SiteTemplate.objects.get(pk=template.pk), TEMPLATE_FIELDS)
    _full_clean(template)
    bad = set(template.default_limits) - set(LIMIT_FIELDS)
    if bad:
        raise ValidationError({"default_limits": f"Unknown limit(s): {', '.join(sorted(bad))}."})
    with transaction.atomic():
        template.save()
        record(
            actions.TEMPLATE_CREATE if creating else actions.TEMPLATE_UPDATE,
            actor=actor,
            target=template,
            changes=diff(before, snapshot(template, TEMPLATE_FIELDS)),
        )
    return template


def require_staff(actor: User | None) -> None:
    if actor is not None and not actor.is_staff:
        raise PermissionDenied("Staff only.")


# --- share links of private sites -----------------------------------------------------------

SHARE_TOKEN_PARAM = "hp_share"  # noqa: S105 (the query parameter's name)


def create_share_link(
    site: Site, *, actor: User | None, expires_at: datetime, label: str = ""
) -> tuple[ShareLink, str]:
    """A link that lets its holders see the (private) site until `expires_at`. Returns the
    link and its token (shown once; stored as a keyed hash)."""
    if expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    token = secrets.token_urlsafe(24)
    with transaction.atomic():
        link = ShareLink.objects.create(
            organization=site.organization,
            site=site,
            label=label,
            token_hash=creds.keyed_hash(token),
            created_by=actor,
            expires_at=expires_at,
        )
        record(
            actions.SHARE_LINK_CREATE,
            actor=actor,
            organization=site.organization,
            target=link,
            changes={"site": site.slug, "label": label, "expires_at": expires_at.isoformat()},
        )
    return link, token


def revoke_share_link(link: ShareLink, *, actor: User | None) -> ShareLink:
    with transaction.atomic():
        link = ShareLink.objects.select_for_update().select_related("site").get(pk=link.pk)
        if link.revoked_at is not None:
            raise ValidationError({"share_link": "This link is already revoked."})
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
        record(
            actions.SHARE_LINK_REVOKE,
            actor=actor,
            organization=link.organization,
            target=link,
            changes={"site": link.site.slug, "label": link.label},
        )
    return link


def use_share_link(site: Site, token: str) -> ShareLink | None:
    """The active link of this site the token proves, its use recorded; else None."""
    link = (
        ShareLink.objects.filter(site=site, token_hash=creds.keyed_hash(token))
        .select_related("organization")
        .first()
    )
    if link is None or not link.active():
        return None
    with transaction.atomic():
        ShareLink.objects.filter(pk=link.pk).update(uses=F("uses") + 1, last_used_at=timezone.now())
        record(
            actions.SHARE_LINK_USE,
            organization=link.organization,
            target=link,
            changes={"site": site.slug, "label": link.label},
        )
    return link


# --- members visiting private sites -----------------------------------------------------------

VISIT_PASS_PARAM = "hp_pass"  # noqa: S105 (the query parameter's name)
VISIT_PASS_SECONDS = 60


def issue_visit_pass(site: Site, user: User) -> str:
    """A one-time pass that lets `user` (a member of the site's organization, signed in to
    the panel) into the private site on its own host; valid for VISIT_PASS_SECONDS."""
    token = secrets.token_urlsafe(24)
    now = timezone.now()
    with transaction.atomic():
        VisitPass.objects.filter(expires_at__lt=now).delete()  # keeps the table small
        VisitPass.objects.create(
            site=site,
            user=user,
            token_hash=creds.keyed_hash(token),
            expires_at=now + timedelta(seconds=VISIT_PASS_SECONDS),
        )
        record(
            actions.SITE_MEMBER_VISIT,
            actor=user,
            organization=site.organization,
            target=site,
            changes={"site": site.slug},
        )
    return token


def use_visit_pass(site: Site, token: str) -> User | None:
    """The member the pass proves, if it is this site's, unused, unexpired and the user is
    still an active member; the pass is spent either way once it matched."""
    now = timezone.now()
    token_hash = creds.keyed_hash(token)
    spent = VisitPass.objects.filter(
        site=site, token_hash=token_hash, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if not spent:
        return None
    user = VisitPass.objects.select_related("user").get(token_hash=token_hash).user
    return user if is_site_member(site, user.pk) else None


def is_site_member(site: Site, user_id) -> bool:
    return Membership.objects.filter(
        organization_id=site.organization_id,
        organization__is_active=True,
        user_id=user_id,
        user__is_active=True,
    ).exists()
