"""Seed 002's dialup-deploy: users, organizations and their members, sites with limits, env
vars (secrets encrypted on the way in), domains, deployments with their logs, daily usage.
Its times are SQLite's CURRENT_TIMESTAMP (UTC) unless a --time-zone says otherwise."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Organization, Role, User
from accounts.services import import_membership, import_organization
from hosting.models import (
    Deployment,
    DeploymentLogChunk,
    DeploymentStatus,
    DeploymentTrigger,
    Domain,
    EnvironmentVariable,
    ResourceLimit,
    Site,
    SiteType,
)
from hosting.services import normalize_hostname
from hostpanel import crypto
from legacy.app_hosting_platform import password_hash
from legacy.base import Importer
from monitoring.models import DailyUsage

USERS = "users"
ORGS = "organizations"
MEMBERS = "organization_members"
SITES = "sites"
SITE_DOMAIN = "sites.domain"
LIMITS = "site_resource_limits"
RAW_USAGE = "site_resource_usage"
DAILY = "site_usage_daily"
DEPLOYMENTS = "deployments"
CONFIG = "system_config"
ENV = "site_environment_variables"
DOMAINS = "site_domains"

STATUSES = {"success": DeploymentStatus.SUCCEEDED, "failed": DeploymentStatus.FAILED}
LIMIT_FIELDS = {
    "max_memory_mb": "memory_mb",
    "max_cpu_percent": "cpu_percent",
    "max_disk_mb": "disk_mb",
    "max_bandwidth_mb": "bandwidth_mb",
    "max_requests_per_minute": "requests_per_minute",
}


class DialupDeployImporter(Importer):
    source: ClassVar[str] = "dialup-deploy"
    required_tables: ClassVar[tuple[str, ...]] = (USERS, ORGS, SITES)

    def run(self) -> None:
        self.import_users()
        self.import_organizations()
        self.import_members()
        self.import_sites()
        self.import_limits()
        self.import_env()
        self.import_domains()
        self.import_deployments()
        self.import_daily_usage()
        self.count_only(
            RAW_USAGE,
            "raw 30-second samples are not imported (their container "
            "counters do not exist here); the daily rollups are",
        )
        self.count_only(CONFIG, "system settings come from hostpanel's environment, not rows")

    def count_only(self, table: str, reason: str) -> None:
        for row in self.rows(table, "rowid AS id"):
            self.report.skip(table, row["id"], reason)

    def site_of(self, table: str, legacy_id: object, site_id: object) -> Site | None:
        site = self.lookup(SITES, site_id)
        if not isinstance(site, Site):
            self.report.skip(table, legacy_id, f"its site #{site_id} was not imported")
            return None
        return site

    # --- accounts -------------------------------------------------------------------------------

    def import_users(self) -> None:
        columns = (
            "id, username, email, password_hash, display_name, created_at, is_active, is_admin"
        )
        for row in self.rows(USERS, columns, "id"):
            if self.earlier(USERS, row["id"]):
                continue
            self.user_from(
                USERS,
                row["id"],
                email=row["email"],
                password_hash=password_hash(row["password_hash"]),
                display_name=str(row["display_name"] or row["username"] or ""),
                is_staff=bool(row["is_admin"]),
                is_active=row["is_active"] is None or bool(row["is_active"]),
                date_joined=self.time(USERS, row["id"], row["created_at"]),
            )

    def import_organizations(self) -> None:
        columns = "id, name, slug, description, owner_id, created_at, is_active"
        for row in self.rows(ORGS, columns, "id"):
            legacy_id = row["id"]
            if self.earlier(ORGS, legacy_id):
                continue
            owner = self.lookup(USERS, row["owner_id"])
            org = import_organization(
                name=str(row["name"] or ""),
                slug=str(row["slug"] or ""),
                is_active=row["is_active"] is None or bool(row["is_active"]),
                created_at=self.time(ORGS, legacy_id, row["created_at"]),
            )
            if org.slug != str(row["slug"] or ""):
                self.report.note(f"{ORGS} #{legacy_id}: slug {row['slug']!r} became {org.slug!r}")
            self.remember(ORGS, legacy_id, org, "imported")
            self.wrote(org)
            if isinstance(owner, User):
                membership, _ = import_membership(owner, org, Role.OWNER)
                self.wrote(membership)
            else:
                self.report.note(
                    f"{ORGS} #{legacy_id} {org.slug}: its owner #{row['owner_id']} was not "
                    "imported; staff must give it an owner"
                )
            if row["description"]:
                self.report.note("organization descriptions are not kept (no such field here)")

    def import_members(self) -> None:
        if MEMBERS not in self.tables:
            return
        for row in self.rows(MEMBERS, "id, user_id, organization_id, role", "id"):
            legacy_id = row["id"]
            if self.earlier(MEMBERS, legacy_id):
                continue
            user = self.lookup(USERS, row["user_id"])
            org = self.lookup(ORGS, row["organization_id"])
            if not isinstance(user, User) or not isinstance(org, Organization):
                self.report.skip(MEMBERS, legacy_id, "its user or organization was not imported")
                continue
            role = str(row["role"] or "member").lower()
            if role not in (Role.OWNER, Role.ADMIN, Role.MEMBER):
                self.report.note(f"{MEMBERS} #{legacy_id}: unknown role {role!r} became member")
                role = Role.MEMBER
            membership, created = import_membership(user, org, role)
            self.remember(MEMBERS, legacy_id, membership, "imported" if created else "matched")
            if created:
                self.wrote(membership)

    # --- sites ------------------------------------------------------------------------------------

    def import_sites(self) -> None:
        columns = (
            "id, name, slug, owner_id, organization_id, site_type, repository_url, branch, "
            "build_command, start_command, port, domain, created_at, updated_at, is_active"
        )
        self.site_domains: list[tuple[Any, Site, str]] = []
        for row in self.rows(SITES, columns, "id"):
            legacy_id = row["id"]
            if self.earlier(SITES, legacy_id):
                continue
            org = self.site_organization(row)
            if org is None:
                continue
            site_type = str(row["site_type"] or "docker").lower()
            if site_type not in SiteType.values:
                self.report.note(f"{SITES} #{legacy_id}: type {site_type!r} became docker")
                site_type = SiteType.DOCKER
            port = row["port"]
            if not isinstance(port, int) or not 1 <= port <= 65535:
                if port is not None:
                    self.report.note(f"{SITES} #{legacy_id}: port {port!r} became 8080")
                port = 8080
            site = self.new_site(
                SITES,
                legacy_id,
                org,
                name=str(row["name"] or ""),
                slug=str(row["slug"] or ""),
                noun="site",
                created=self.time(SITES, legacy_id, row["created_at"]),
                updated=self.time(SITES, legacy_id, row["updated_at"]),
                site_type=site_type,
                repository_url=str(row["repository_url"] or "")[:500],
                branch=str(row["branch"] or "main")[:100],
                build_command=str(row["build_command"] or "")[:500],
                start_command=str(row["start_command"] or "")[:500],
                internal_port=port,
            )
            if row["domain"]:
                self.site_domains.append((legacy_id, site, str(row["domain"])))
            if row["is_active"] is not None and not row["is_active"]:
                self.report.note(f"{SITES} #{legacy_id}: inactive in the old system")
        self.report.note("imported sites wait stopped: each starts with its first deployment here")

    def site_organization(self, row: Any) -> Organization | None:
        if row["organization_id"] is not None:
            org = self.lookup(ORGS, row["organization_id"])
            if isinstance(org, Organization):
                return org
            self.report.skip(
                SITES, row["id"], f"its organization #{row['organization_id']} was not imported"
            )
            return None
        if row["owner_id"] is not None:
            owner = self.lookup(USERS, row["owner_id"])
            if isinstance(owner, User):
                return self.personal_organization(owner)
            self.report.skip(SITES, row["id"], f"its owner #{row['owner_id']} was not imported")
            return None
        self.report.skip(SITES, row["id"], "it has neither an owner nor an organization")
        return None

    def import_limits(self) -> None:
        """One limits row per site: the newest legacy row, the seed's defaults otherwise."""
        newest: dict[str, Any] = {}
        columns = "id, site_id, " + ", ".join(LIMIT_FIELDS)
        for row in self.rows(LIMITS, columns, "id"):
            if self.earlier(LIMITS, row["id"]):
                continue
            site_id = str(row["site_id"])
            if site_id in newest:
                older = newest[site_id]
                self.report.skip(LIMITS, older["id"], "a newer limits row of the same site wins")
            newest[site_id] = row
        for legacy_id, site in self.new_sites():
            if site.deleted_at is not None:
                continue
            row = newest.pop(legacy_id, None)
            limit = ResourceLimit(organization=site.organization, site=site)
            for old, new in LIMIT_FIELDS.items():
                if row is not None and row[old] is not None:
                    setattr(limit, new, row[old])
            try:
                limit.full_clean(exclude=["site", "organization"])
            except ValidationError as exc:
                for name in exc.message_dict:
                    default = ResourceLimit._meta.get_field(name).default
                    self.report.note(
                        f"{LIMITS} of {SITES} #{legacy_id}: {name} {getattr(limit, name)!r} "
                        f"is out of range, the default {default} is used"
                    )
                    setattr(limit, name, default)
            limit.save()
            self.wrote(limit)
            if row is not None:
                self.remember(LIMITS, row["id"], limit, "imported")
        for site_id, row in newest.items():
            self.report.skip(LIMITS, row["id"], f"its site #{site_id} was not imported")

    def new_sites(self) -> list[tuple[Any, Site]]:
        return [
            (key[1], obj)
            for key, obj in self._objects.items()
            if key[0] == SITES and isinstance(obj, Site) and obj.pk in self.written_sites()
        ]

    def written_sites(self) -> set[Any]:
        return set(self.report.written.get("hosting.site", []))

    def import_env(self) -> None:
        for row in self.rows(ENV, "id, site_id, key, value, is_secret", "id"):
            legacy_id = row["id"]
            if self.earlier(ENV, legacy_id):
                continue
            site = self.site_of(ENV, legacy_id, row["site_id"])
            if site is None:
                continue
            is_secret = bool(row["is_secret"])
            value = str(row["value"] or "")
            var = EnvironmentVariable(
                organization=site.organization,
                site=site,
                key=str(row["key"] or ""),
                value=crypto.encrypt(value) if is_secret else value,
                is_secret=is_secret,
            )
            try:
                var.full_clean(exclude=["site", "organization", "value"])
            except ValidationError:
                self.report.skip(ENV, legacy_id, "its name is not a valid variable name")
                continue
            var.save()
            self.remember(ENV, legacy_id, var, "imported")
            self.wrote(var)

    def import_domains(self) -> None:
        primary: set[Any] = set(
            Domain.objects.filter(site__in=self.written_sites(), is_primary=True).values_list(
                "site_id", flat=True
            )
        )
        columns = "id, site_id, domain, is_primary, ssl_enabled, verified_at"
        for row in self.rows(DOMAINS, columns, "id"):
            legacy_id = row["id"]
            if self.earlier(DOMAINS, legacy_id):
                continue
            site = self.site_of(DOMAINS, legacy_id, row["site_id"])
            if site is None:
                continue
            wants_primary = bool(row["is_primary"])
            if wants_primary and site.pk in primary:
                self.report.note(f"{DOMAINS} #{legacy_id}: a second primary, kept as not primary")
                wants_primary = False
            domain = self.new_domain(
                DOMAINS,
                legacy_id,
                site,
                row["domain"],
                is_primary=wants_primary,
                ssl_enabled=row["ssl_enabled"] is None or bool(row["ssl_enabled"]),
                verified_at=self.time(DOMAINS, legacy_id, row["verified_at"]),
            )
            if domain is not None and wants_primary:
                primary.add(site.pk)
        self.report.source_rows[SITE_DOMAIN] = len(self.site_domains)
        for legacy_id, site, hostname in self.site_domains:
            if Domain.objects.filter(site=site, hostname=normalize_hostname(hostname)).exists():
                self.report.count(SITE_DOMAIN, "matched")
                continue
            is_primary = site.pk not in primary
            self.new_domain(SITE_DOMAIN, legacy_id, site, hostname, is_primary=is_primary)

    # --- history ----------------------------------------------------------------------------------

    def import_deployments(self) -> None:
        columns = (
            "id, site_id, commit_hash, commit_message, branch, deployed_by, status, build_log, "
            "build_time_seconds, deployed_at"
        )
        numbers: dict[Any, int] = defaultdict(int)
        for row in self.rows(DEPLOYMENTS, columns, "site_id, deployed_at, id"):
            legacy_id = row["id"]
            if self.earlier(DEPLOYMENTS, legacy_id):
                continue
            site = self.site_of(DEPLOYMENTS, legacy_id, row["site_id"])
            if site is None:
                continue
            if site.pk not in numbers:
                numbers[site.pk] = max(site.deployments.values_list("number", flat=True), default=0)
            numbers[site.pk] += 1
            self.add_deployment(row, site, numbers[site.pk])

    def add_deployment(self, row: Any, site: Site, number: int) -> None:
        legacy_id = row["id"]
        old_status = str(row["status"] or "")
        status = STATUSES.get(old_status, DeploymentStatus.FAILED)
        error = ""
        if old_status not in STATUSES:
            error = f"imported unfinished (status {old_status!r} in the old system)"
            self.report.note(f"{DEPLOYMENTS} #{legacy_id}: {error}, kept as failed")
        finished = self.time(DEPLOYMENTS, legacy_id, row["deployed_at"])
        seconds = row["build_time_seconds"]
        seconds = float(seconds) if isinstance(seconds, int | float) and seconds >= 0 else None
        started = finished - timedelta(seconds=seconds) if finished and seconds else finished
        author = self.lookup(USERS, row["deployed_by"])
        log = str(row["build_log"] or "")
        data = log.encode()
        if len(data) > settings.DEPLOY_LOG_MAX_BYTES:
            self.report.note(f"{DEPLOYMENTS} #{legacy_id}: build log cut to its last bytes")
            data = data[-settings.DEPLOY_LOG_MAX_BYTES :]
            log = data.decode(errors="ignore")
        deployment = Deployment.objects.create(
            organization=site.organization,
            site=site,
            number=number,
            status=status,
            trigger=DeploymentTrigger.IMPORT,
            triggered_by=author if isinstance(author, User) else None,
            branch=str(row["branch"] or "")[:100],
            commit_hash=str(row["commit_hash"] or "")[:64],
            commit_message=str(row["commit_message"] or ""),
            error=error,
            build_time_seconds=seconds,
            started_at=started,
            finished_at=finished,
            log_size=len(data),
            created_at=started or timezone.now(),
        )
        if log:
            DeploymentLogChunk.objects.create(
                deployment=deployment, offset=0, stage="build", text=log
            )
        self.remember(DEPLOYMENTS, legacy_id, deployment, "imported")
        self.wrote(deployment)

    def import_daily_usage(self) -> None:
        columns = (
            "id, site_id, date, avg_memory_mb, max_memory_mb, avg_cpu_percent, max_cpu_percent, "
            "total_bandwidth_mb, total_requests, avg_response_time_ms, uptime_seconds"
        )
        batch = []
        seen: set[tuple[Any, date]] = set()
        for row in self.rows(DAILY, columns, "id"):
            legacy_id = row["id"]
            if self.earlier(DAILY, legacy_id):
                continue
            site = self.site_of(DAILY, legacy_id, row["site_id"])
            if site is None:
                continue
            try:
                day = date.fromisoformat(str(row["date"] or "").strip()[:10])
            except ValueError:
                self.report.skip(DAILY, legacy_id, "it has no readable date")
                continue
            if (site.pk, day) in seen or DailyUsage.objects.filter(site=site, date=day).exists():
                self.report.skip(DAILY, legacy_id, "that day is recorded here already")
                continue
            seen.add((site.pk, day))
            usage = DailyUsage(
                organization=site.organization,
                site=site,
                date=day,
                avg_memory_mb=row["avg_memory_mb"] or 0,
                max_memory_mb=row["max_memory_mb"] or 0,
                avg_cpu_percent=row["avg_cpu_percent"] or 0,
                max_cpu_percent=row["max_cpu_percent"] or 0,
                total_bandwidth_mb=row["total_bandwidth_mb"] or 0,
                total_requests=row["total_requests"],
                avg_response_time_ms=row["avg_response_time_ms"],
                uptime_seconds=max(0, min(int(row["uptime_seconds"] or 0), 86400)),
            )
            batch.append((legacy_id, usage))
        DailyUsage.objects.bulk_create([u for _, u in batch], batch_size=500)
        for legacy_id, usage in batch:
            if usage.pk is None:  # SQLite before 3.35 returns no ids from a bulk insert
                usage = DailyUsage.objects.get(site=usage.site, date=usage.date)
            self.remember(DAILY, legacy_id, usage, "imported")
            self.wrote(usage)
