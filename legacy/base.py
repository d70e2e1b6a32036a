"""What both importers share: reading the legacy SQLite file, remembering what each legacy
row became, the one transaction, and the checks made before it commits."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, ClassVar

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import Organization, User
from accounts.services import import_user
from audit import actions
from audit.services import record
from hosting.models import (
    DesiredState,
    DockerHost,
    Domain,
    ObservedState,
    OrganizationQuota,
    ReconcileStatus,
    ResourceLimit,
    Site,
)
from hosting.services import normalize_hostname
from legacy.models import LegacyRecord
from legacy.report import Report
from legacy.times import BadTime, parse_time


class LegacyImportError(Exception):
    """The import was refused or failed: nothing was written."""


def open_source(path: Path) -> sqlite3.Connection:
    """The legacy database, read-only (the old file is never changed)."""
    if not path.is_file():
        raise LegacyImportError(f"{path}: no such file")
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise LegacyImportError(f"{path}: not a SQLite database ({exc})") from None
    return conn


class Importer:
    """One legacy system's rows into hostpanel's models. Subclasses import table by table in
    `run`, calling `remember` for what they write and `report.skip` for what they do not."""

    source: ClassVar[str]
    required_tables: ClassVar[tuple[str, ...]]

    def __init__(self, path: Path, *, zone: tzinfo, host_name: str = "") -> None:
        self.path = path
        self.zone = zone
        self.host_name = host_name
        self.conn = open_source(path)
        self.report = Report(source=self.source, path=str(path))
        self._host: DockerHost | None = None
        self._records: dict[tuple[str, str], tuple[str, str]] = {}
        self._new_records: list[LegacyRecord] = []
        self._objects: dict[tuple[str, str], Any] = {}
        self._personal: dict[Any, Organization] = {}
        names = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        missing = [t for t in self.required_tables if t not in names]
        if missing:
            raise LegacyImportError(
                f"{path}: not a {self.source} database (no table {', '.join(missing)})"
            )
        self.tables = names

    def run(self) -> None:
        raise NotImplementedError

    # --- reading ---------------------------------------------------------------------------

    def rows(self, table: str, columns: str, order: str = "rowid") -> Iterator[sqlite3.Row]:
        """Every row of a legacy table (counted, so each must end with an outcome)."""
        if table not in self.tables:
            self.report.note(f"{table}: not in the source, nothing to import from it")
            return iter(())
        try:
            rows = self.conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchall()  # noqa: S608 (names are ours)
        except sqlite3.DatabaseError as exc:
            raise LegacyImportError(f"{table}: cannot be read as {self.source}'s ({exc})") from None
        self.report.source_rows[table] = len(rows)
        return iter(rows)

    def time(self, table: str, legacy_id: object, value: object) -> datetime | None:
        """A legacy time; an unreadable one becomes empty, with a note."""
        try:
            return parse_time(value, self.zone)
        except BadTime as exc:
            self.report.note(f"{table} #{legacy_id}: {exc}, left empty")
            return None

    # --- what each legacy row became ------------------------------------------------------------

    def load_records(self) -> None:
        for table, legacy_id, target_type, target_id in LegacyRecord.objects.filter(
            source=self.source
        ).values_list("table", "legacy_id", "target_type", "target_id"):
            self._records[(table, legacy_id)] = (target_type, target_id)

    def earlier(self, table: str, legacy_id: object) -> bool:
        """Whether an earlier run handled this row (then it is counted as such)."""
        if (table, str(legacy_id)) not in self._records:
            return False
        self.report.count(table, "earlier")
        return True

    def lookup(self, table: str, legacy_id: object) -> Any | None:
        key = (table, str(legacy_id))
        if key in self._objects:
            return self._objects[key]
        found = self._records.get(key)
        if found is None:
            return None
        model = apps.get_model(found[0])
        obj = model._default_manager.filter(pk=found[1]).first()
        self._objects[key] = obj
        return obj

    def remember(self, table: str, legacy_id: object, obj: models.Model, outcome: str) -> None:
        """Record what a legacy row became (imported: written now; matched: existing here)."""
        key = (table, str(legacy_id))
        label = obj._meta.label_lower
        self._records[key] = (label, str(obj.pk))
        self._objects[key] = obj
        self._new_records.append(
            LegacyRecord(
                source=self.source,
                table=table,
                legacy_id=str(legacy_id),
                target_type=label,
                target_id=str(obj.pk),
            )
        )
        self.report.count(table, outcome)

    def wrote(self, obj: models.Model) -> None:
        self.report.written[obj._meta.label_lower].append(obj.pk)

    def save_records(self) -> None:
        LegacyRecord.objects.bulk_create(self._new_records, batch_size=500)

    # --- shared writers -------------------------------------------------------------------------

    def user_from(
        self, table: str, legacy_id: object, *, email: str, password_hash: str | None, **fields
    ) -> User | None:
        """A legacy user: created with their personal organization, matched to an existing
        account with the same address, or skipped when the address is not one."""
        email = (email or "").strip()
        existing = User.objects.filter(email__iexact=email).first() if email else None
        if existing is not None:
            target = str(existing.pk)
            mine = (k[1] for k, v in self._records.items() if k[0] == table and v[1] == target)
            first = next(mine, None)
            if first is not None:
                self.report.note(
                    f"{table} #{legacy_id} {email}: the same address as #{first} (letter case "
                    f"aside); merged into that user, its own password is not kept"
                )
            else:
                self.report.note(
                    f"{table} #{legacy_id} {email}: matched the existing user {existing.email} "
                    f"(its password and roles here are unchanged)"
                )
            self.remember(table, legacy_id, existing, "matched")
            return existing
        try:
            user, org = import_user(email=email, password_hash=password_hash, **fields)
        except ValidationError:
            self.report.skip(table, legacy_id, "not a valid email address")
            return None
        if password_hash is None:
            self.report.note(
                f"{table} #{legacy_id} {user.email}: no bcrypt hash; "
                "signs in after a password reset"
            )
        self.remember(table, legacy_id, user, "imported")
        self.wrote(user)
        self.wrote(org)
        return user

    def personal_organization(self, user: User) -> Organization:
        if user.pk in self._personal:
            return self._personal[user.pk]
        org = Organization.objects.filter(
            is_personal=True, memberships__user=user, memberships__role="owner"
        ).first()
        if org is None:  # a matched user whose personal organization was deleted
            from accounts.services import import_membership, import_organization

            org = import_organization(name=user.email.split("@")[0], slug="")
            org.is_personal = True
            org.save(update_fields=["is_personal"])
            import_membership(user, org, "owner")
            self.wrote(org)
        self._personal[user.pk] = org
        return org

    def host(self) -> DockerHost:
        """Where imported sites are placed (stopped: nothing runs until they are deployed)."""
        if self._host is None:
            hosts = DockerHost.objects.all()
            if self.host_name:
                self._host = hosts.filter(name=self.host_name).first()
                if self._host is None:
                    raise LegacyImportError(f"no Docker host named {self.host_name!r}")
            elif len(names := [h.name for h in hosts[:20]]) == 1:
                self._host = hosts.get()
            else:
                raise LegacyImportError(
                    "imported sites need a Docker host: name one with --host"
                    + (f" (hosts here: {', '.join(names)})" if names else " (none is registered)")
                )
        return self._host

    def new_site(
        self,
        table: str,
        legacy_id: object,
        org: Organization,
        *,
        name: str,
        slug: str,
        noun: str,
        created: datetime | None,
        updated: datetime | None,
        **fields: Any,
    ) -> Site:
        """A legacy site, stopped on the import's host (nothing runs until it is deployed),
        with its own times and the seed's default limits (a caller may change them)."""
        created = created or timezone.now()
        site = Site.objects.create(
            organization=org,
            name=(name.strip() or f"{noun.title()} {legacy_id}")[:100],
            slug=self.site_slug(org, slug or name, f"{noun}-{legacy_id}"),
            host=self.host(),
            desired_state=DesiredState.STOPPED,
            observed_state=ObservedState.STOPPED,
            reconcile_status=ReconcileStatus.CONVERGED,
            generation=1,
            reconciled_generation=1,
            created_at=created,
            **fields,
        )
        Site.objects.filter(pk=site.pk).update(updated_at=updated or created)
        self.remember(table, legacy_id, site, "imported")
        self.wrote(site)
        return site

    def new_domain(
        self, table: str, legacy_id: object, site: Site, raw: object, **fields: Any
    ) -> Domain | None:
        """A legacy hostname of a site, unless it is not one or is taken here already."""
        hostname = normalize_hostname(str(raw or ""))
        try:
            Domain._meta.get_field("hostname").run_validators(hostname)
        except ValidationError:
            self.report.skip(table, legacy_id, "not a valid hostname")
            return None
        if Domain.objects.filter(hostname__iexact=hostname).exists():
            self.report.skip(table, legacy_id, "its hostname is already used here")
            return None
        domain = Domain.objects.create(
            organization=site.organization,
            site=site,
            hostname=hostname,
            verification_token=secrets.token_hex(16),
            **fields,
        )
        self.remember(table, legacy_id, domain, "imported")
        self.wrote(domain)
        if domain.verified_at is None:
            self.report.note(
                "unverified imported domains are routed once their DNS TXT record is verified "
                "here (the old systems did not prove who owns a name)"
            )
        return domain

    def site_slug(self, org: Organization, name: str, fallback: str) -> str:
        root = (slugify(name)[:34].strip("-") or fallback)[:34]
        slug, n = root, 1
        while Site.objects.filter(organization=org, slug=slug, deleted_at__isnull=True).exists():
            n += 1
            slug = f"{root}-{n}"
        return slug

    def fit_quotas(self) -> None:
        """Imported sites are never refused for quota: an organization's quota grows to hold
        them, and the report says so."""
        written = self.report.written.get("hosting.site", [])
        orgs = set(Site.objects.filter(pk__in=written).values_list("organization_id", flat=True))
        for quota in OrganizationQuota.objects.filter(organization_id__in=orgs).select_related(
            "organization"
        ):
            alive = Site.objects.filter(organization=quota.organization, deleted_at__isnull=True)
            use = ResourceLimit.objects.filter(site__in=alive).aggregate(
                memory=Sum("memory_mb"), cpu=Sum("cpu_percent")
            )
            wanted = {
                "max_sites": alive.count(),
                "max_memory_mb": use["memory"] or 0,
                "max_cpu_percent": use["cpu"] or 0,
            }
            raised = {k: v for k, v in wanted.items() if v > getattr(quota, k)}
            if raised:
                for name, value in raised.items():
                    setattr(quota, name, value)
                quota.save(update_fields=[*raised, "updated_at"])
                shown = ", ".join(f"{k} {v}" for k, v in raised.items())
                self.report.note(
                    f"quota of {quota.organization.slug} raised to hold its imported sites: {shown}"
                )


def target_holdings() -> str:
    """What the target database holds already, beyond staff accounts ('' when empty)."""
    parts = []
    users = User.objects.filter(is_staff=False).count()
    if users:
        parts.append(f"{users} users")
    sites = Site.objects.count()
    if sites:
        parts.append(f"{sites} sites")
    return " and ".join(parts)


def check_written(report: Report) -> list[str]:
    """Every row the report says was written is in the database, in its transaction."""
    problems = []
    for label, pks in report.written.items():
        model = apps.get_model(label)
        found = sum(
            model._default_manager.filter(pk__in=pks[i : i + 500]).count()
            for i in range(0, len(pks), 500)
        )
        if found != len(pks):
            problems.append(f"{label}: {len(pks)} written, {found} found")
    return problems


def run_import(importer: Importer, *, dry_run: bool = False, force: bool = False) -> Report:
    """The whole import in one transaction: written, counted, then committed (or rolled
    back for a dry run). Counts are checked before the commit, so a mismatch leaves nothing."""
    report = importer.report
    report.dry_run = dry_run
    with transaction.atomic():
        holdings = target_holdings()
        importer.load_records()
        importer.run()
        if report.new_rows == 0:
            report.nothing_to_do = True
            transaction.set_rollback(True)
            return report
        if holdings and not force:
            raise LegacyImportError(
                f"the target already holds {holdings}; --force merges into it (accounts with "
                "the same address are matched, never overwritten)"
            )
        importer.save_records()
        importer.fit_quotas()
        problems = report.count_problems() + check_written(report)
        if problems:
            raise LegacyImportError("counts do not match, nothing written: " + "; ".join(problems))
        record(
            actions.LEGACY_IMPORT,
            target_type="legacy.import",
            target_id=importer.source,
            target_label=f"{importer.source} data from {importer.path.name}",
            changes=report.summary(),
        )
        if dry_run:
            transaction.set_rollback(True)
    importer.conn.close()
    return report
