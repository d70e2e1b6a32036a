"""Seed 001's App Hosting Platform (its SQLite schema exactly as its DDL gives it):
users, virtual servers, domain names, recent activity and live registration codes. Its
container cache is not imported: container sync rebuilds it from the engines."""

from __future__ import annotations

from typing import ClassVar

from django.utils import timezone

from accounts import secrets as creds
from accounts.hashers import import_bcrypt_hash
from accounts.models import RegistrationCode, User
from audit.services import record_imported
from hosting.models import (
    ResourceLimit,
    Site,
    SiteType,
)
from legacy.base import Importer

USERS = "System_Users"
CODES = "System_RegistrationCodes"
SERVERS = "Hosting_VirtualServers"
DOMAINS = "Hosting_DomainNames"
ACTIVITY = "System_RecentActivity"
CONTAINERS = "Hosting_DockerContainers"


def password_hash(raw: object) -> str | None:
    try:
        return import_bcrypt_hash(str(raw or ""))
    except ValueError:
        return None


class AppHostingPlatformImporter(Importer):
    source: ClassVar[str] = "app-hosting-platform"
    required_tables: ClassVar[tuple[str, ...]] = (USERS, SERVERS, DOMAINS)

    def run(self) -> None:
        self.import_users()
        self.import_servers()
        self.import_domains()
        self.import_activity()
        self.import_codes()
        if CONTAINERS in self.tables:
            count = self.conn.execute(f"SELECT COUNT(*) FROM {CONTAINERS}").fetchone()[0]  # noqa: S608
            self.report.note(
                f"{CONTAINERS}: {count} cached container rows not imported (container sync "
                "rebuilds them from the engines)"
            )

    def import_users(self) -> None:
        self.user_ids: set[int] = set()
        for row in self.rows(USERS, "ID, Email, Password, Admin, Enabled, LastLogin", "ID"):
            self.user_ids.add(row["ID"])
            if self.earlier(USERS, row["ID"]):
                continue
            self.user_from(
                USERS,
                row["ID"],
                email=row["Email"],
                password_hash=password_hash(row["Password"]),
                is_staff=bool(row["Admin"]),
                is_active=bool(row["Enabled"]),
                last_login=self.time(USERS, row["ID"], row["LastLogin"]),
            )

    def import_servers(self) -> None:
        columns = "ID, OwnerID, Name, Enabled, Deleted, CreatedAt, UpdatedAt"
        for row in self.rows(SERVERS, columns, "ID"):
            legacy_id = row["ID"]
            if self.earlier(SERVERS, legacy_id):
                continue
            if legacy_id == 0:
                self.report.skip(SERVERS, 0, "the HOST row (host-level containers), not a server")
                continue
            owner = self.lookup(USERS, row["OwnerID"])
            if not isinstance(owner, User):
                known = row["OwnerID"] in self.user_ids
                self.report.skip(
                    SERVERS,
                    legacy_id,
                    f"its owner #{row['OwnerID']} "
                    + ("was not imported" if known else "does not exist"),
                )
                continue
            org = self.personal_organization(owner)
            created = self.time(SERVERS, legacy_id, row["CreatedAt"])
            updated = self.time(SERVERS, legacy_id, row["UpdatedAt"]) or created
            deleted = bool(row["Deleted"])
            site = self.new_site(
                SERVERS,
                legacy_id,
                org,
                name=str(row["Name"] or ""),
                slug="",
                noun="server",
                created=created,
                updated=updated,
                site_type=SiteType.DOCKER,
                deleted_at=(updated or timezone.now()) if deleted else None,
            )
            self.wrote(ResourceLimit.objects.create(organization=org, site=site))
            if row["Enabled"] and not deleted:
                self.report.note(
                    f"{SERVERS} #{legacy_id} ran in the old system; here it waits stopped "
                    "until an image or repository is set and it is deployed"
                )

    def import_domains(self) -> None:
        columns = "ID, VirtualServerID, DomainName, IsCloudflare, SSL"
        for row in self.rows(DOMAINS, columns, "ID"):
            legacy_id = row["ID"]
            if self.earlier(DOMAINS, legacy_id):
                continue
            site = self.lookup(SERVERS, row["VirtualServerID"])
            if not isinstance(site, Site):
                self.report.skip(
                    DOMAINS, legacy_id, f"its server #{row['VirtualServerID']} is missing"
                )
                continue
            if site.deleted_at is not None:
                self.report.skip(DOMAINS, legacy_id, "its server was deleted")
                continue
            self.new_domain(
                DOMAINS,
                legacy_id,
                site,
                row["DomainName"],
                is_cloudflare=bool(row["IsCloudflare"]),
                ssl_enabled=bool(row["SSL"]),
            )

    def import_activity(self) -> None:
        for row in self.rows(ACTIVITY, "ID, UserID, Message, Time", "ID"):
            legacy_id = row["ID"]
            if self.earlier(ACTIVITY, legacy_id):
                continue
            when = self.time(ACTIVITY, legacy_id, row["Time"])
            if when is None:
                self.report.skip(ACTIVITY, legacy_id, "it has no readable time")
                continue
            actor = self.lookup(USERS, row["UserID"])
            actor = actor if isinstance(actor, User) else None
            entry = record_imported(
                timestamp=when,
                actor=actor,
                actor_label=f"legacy user #{row['UserID']}",
                organization=self.personal_organization(actor) if actor else None,
                message=str(row["Message"] or ""),
                source=self.source,
                legacy_id=str(legacy_id),
            )
            self.remember(ACTIVITY, legacy_id, entry, "imported")
            self.wrote(entry)

    def import_codes(self) -> None:
        if CODES not in self.tables:
            return
        for row in self.rows(CODES, "ID, UserID, Code, ValidUntil", "ID"):
            legacy_id = row["ID"]
            if self.earlier(CODES, legacy_id):
                continue
            valid_until = self.time(CODES, legacy_id, row["ValidUntil"])
            if valid_until is None or valid_until <= timezone.now():
                self.report.skip(CODES, legacy_id, "expired")
                continue
            issuer = self.lookup(USERS, row["UserID"])
            if not isinstance(issuer, User) or not issuer.is_staff:
                self.report.skip(CODES, legacy_id, "its issuer is not an administrator here")
                continue
            if RegistrationCode.objects.filter(created_by=issuer).exists():
                self.report.skip(CODES, legacy_id, "its issuer has a live code here already")
                continue
            code = RegistrationCode.objects.create(
                created_by=issuer,
                code_hash=creds.keyed_hash(str(row["Code"]).strip().upper()),
                valid_until=valid_until,
            )
            self.remember(CODES, legacy_id, code, "imported")
            self.wrote(code)
