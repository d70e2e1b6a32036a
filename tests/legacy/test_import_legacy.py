"""manage.py import_legacy: both legacy databases, built from the seeds' own DDL with odd rows
(missing owners, duplicate-looking emails, empty LastLogin, unicode names), imported on the
database under test (the unit run covers SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from accounts import services as account_services
from accounts.models import Membership, Organization, RegistrationCode, User
from audit.chain import verify_rows
from audit.models import AuditLog
from hosting.models import (
    Deployment,
    DeploymentLogChunk,
    Domain,
    EnvironmentVariable,
    OrganizationQuota,
    Site,
)
from hostpanel import crypto
from legacy import base
from legacy.models import LegacyRecord
from monitoring.models import DailyUsage
from tests.factories import make_user
from tests.hosting.factories import ensure_host
from tests.legacy.ddl import APP_HOSTING_PLATFORM, DIALUP_DEPLOY


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture
def legacy_hashers(settings):
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "accounts.hashers.LegacyBCryptPasswordHasher",
    ]


def build_app_hosting_platform(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript(APP_HOSTING_PLATFORM)
    live = int(time.time()) + 1200
    db.executemany(
        "INSERT INTO System_Users (ID, Email, Password, Admin, Enabled, LastLogin) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (1, "admin@admin.com", bcrypt_hash("old-admin-pass"), 1, 1, "2025-12-08 10:30:00"),
            (2, "user@example.com", bcrypt_hash("old-user-pass"), 0, 1, ""),
            (3, "User@Example.com", bcrypt_hash("another-pass"), 0, 1, "2025-12-07 15:45:00"),
            (4, "not an address", bcrypt_hash("x"), 0, 0, ""),
            (5, "zoe@exämple.test", "plain-text-password", 0, 0, "garbage time"),
        ],
    )
    db.executemany(
        "INSERT INTO Hosting_VirtualServers VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (1, 2, "My Web App", 1, 0, "2025-12-01 10:00:00", "2025-12-08 09:00:00"),
            (2, 2, "API Server", 0, 0, "2025-12-02 14:30:00", "2025-12-07 16:00:00"),
            (3, 2, "Old thing", 0, 1, "2025-11-01 08:00:00", "2025-11-20 08:00:00"),
            (4, 99, "Orphan", 1, 0, "2025-11-01 08:00:00", "2025-11-01 08:00:00"),
            (5, 3, "日本語のサイト", 1, 0, "2025-12-03 08:00:00", "2025-12-03 08:00:00"),
            (6, 4, "Bad owner", 1, 0, "2025-12-03 08:00:00", "2025-12-03 08:00:00"),
        ],
    )
    db.executemany(
        "INSERT INTO Hosting_DomainNames VALUES (?, ?, ?, ?, ?)",
        [
            (1, 1, "myapp.example.com", 0, 1),
            (2, 1, "API.example.com.", 1, 1),
            (3, 2, "demo.project.org", 0, 0),
            (4, 42, "lost.example.com", 0, 0),
            (5, 3, "gone.example.com", 0, 0),
            (6, 1, "not a hostname", 0, 0),
        ],
    )
    db.executemany(
        "INSERT INTO System_RecentActivity VALUES (?, ?, ?, ?)",
        [
            (1, 1, "User admin@admin.com logged in (IP: 10.0.0.1)", "2025-12-08 10:30:00"),
            (2, 2, "Virtual server #1 created", "2025-12-08 10:35:00"),
            (3, 77, 'Domain name "x.example.com" added', "2025-12-08 10:40:00"),
            (4, 2, "no time", ""),
        ],
    )
    db.executemany(
        "INSERT INTO System_RegistrationCodes VALUES (?, ?, ?, ?)",
        [(1, 1, "ABC12345", live), (2, 2, "OLD00000", 1733666400)],
    )
    db.execute(
        "INSERT INTO Hosting_DockerContainers VALUES ('abc', 0, 'sh', '', 'img', '', '', "
        "'hosting-users-dind-1', '', '', '', '', 'running', 'Up', '')"
    )
    db.commit()
    db.close()
    return path


def build_dialup_deploy(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript(DIALUP_DEPLOY)
    db.executemany(
        "INSERT INTO users (id, username, email, password_hash, display_name, created_at, "
        "is_active, is_admin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                1,
                "ada",
                "ada@example.com",
                bcrypt_hash("ada-old-pass"),
                "Ada Lovelace",
                "2025-01-02 03:04:05",
                1,
                1,
            ),
            (
                2,
                "bob",
                "bob@example.com",
                bcrypt_hash("bob-old-pass"),
                None,
                "2025-02-02 03:04:05",
                1,
                0,
            ),
            (
                3,
                "cy",
                "CY@example.com",
                bcrypt_hash("cy-old-pass"),
                "Çy Ünïcode",
                "2025-03-02 03:04:05",
                0,
                0,
            ),
        ],
    )
    db.executemany(
        "INSERT INTO organizations (id, name, slug, description, owner_id) VALUES (?, ?, ?, ?, ?)",
        [(1, "Acme", "acme", "makers", 1), (2, "Ghost Org", "ghost", None, 50)],
    )
    db.executemany(
        "INSERT INTO organization_members (id, user_id, organization_id, role) VALUES (?, ?, ?, ?)",
        [(1, 1, 1, "owner"), (2, 2, 1, "admin"), (3, 3, 1, "wizard"), (4, 60, 1, "member")],
    )
    db.executemany(
        "INSERT INTO sites (id, name, slug, owner_id, organization_id, site_type, "
        "repository_url, branch, build_command, start_command, port, domain) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                1,
                "Shop",
                "shop",
                None,
                1,
                "docker",
                "https://git.example.com/shop.git",
                "main",
                "make",
                "./run",
                3000,
                "shop.example.com",
            ),
            (2, "Bob's blog", "bobs-blog", 2, None, "static", None, "main", None, None, None, None),
            (3, "Orphan", "orphan", 70, None, "dynamic", None, "main", None, None, 80, None),
            (4, "Weird", "weird", 2, None, "node", None, "dev", None, "node .", 99999, None),
        ],
    )
    db.execute(
        "INSERT INTO site_resource_limits (site_id, max_memory_mb, max_cpu_percent) "
        "VALUES (1, 256, 25)"
    )
    db.execute(
        "INSERT INTO site_resource_limits (site_id, max_memory_mb, max_cpu_percent) "
        "VALUES (1, 384, 30)"
    )
    db.execute("INSERT INTO site_resource_limits (site_id, max_memory_mb) VALUES (2, 1)")
    db.executemany(
        "INSERT INTO site_environment_variables (site_id, key, value, is_secret) "
        "VALUES (?, ?, ?, ?)",
        [
            (1, "DATABASE_URL", "postgres://shop:hunter2@db/shop", 1),
            (1, "MODE", "production", 0),
            (1, "9BAD", "x", 0),
            (3, "LOST", "y", 0),
        ],
    )
    db.executemany(
        "INSERT INTO site_domains (site_id, domain, is_primary, ssl_enabled, verified_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (1, "www.shop.example.com", 1, 1, "2025-06-01 12:00:00"),
            (1, "shop2.example.com", 1, 0, None),
            (2, "www.shop.example.com", 0, 1, None),
        ],
    )
    db.executemany(
        "INSERT INTO deployments (site_id, commit_hash, commit_message, branch, deployed_by, "
        "status, build_log, build_time_seconds, deployed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, "a" * 40, "first", "main", 1, "success", "step 1\nok\n", 42, "2025-06-01 12:00:00"),
            (1, "b" * 40, "second", "main", 2, "building", "step 1\n", None, "2025-06-02 12:00:00"),
            (1, "c" * 40, "third", "main", 1, "failed", "boom ☃\n", 3, "2025-06-03 12:00:00"),
            (3, "d" * 40, "lost", "main", 1, "success", "", 1, "2025-06-03 12:00:00"),
        ],
    )
    db.executemany(
        "INSERT INTO site_usage_daily (site_id, date, avg_memory_mb, max_memory_mb, "
        "avg_cpu_percent, max_cpu_percent, total_bandwidth_mb, total_requests, "
        "avg_response_time_ms, uptime_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, "2025-06-01", 100.5, 200.0, 10.0, 50.0, 12.5, 1000, 35.0, 86400),
            (1, "2025-06-02", 110.0, 210.0, 11.0, 51.0, 13.5, 1100, None, 80000),
            (3, "2025-06-02", 1, 1, 1, 1, 1, 1, 1, 1),
        ],
    )
    db.execute("INSERT INTO site_resource_usage (site_id, memory_mb) VALUES (1, 100)")
    db.execute("INSERT INTO system_config (key, value) VALUES ('max_sites', '10')")
    db.commit()
    db.close()
    return path


def run(system: str, source: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_legacy", "--from", system, "--source", str(source), *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def aph(tmp_path) -> Path:
    ensure_host()
    return build_app_hosting_platform(tmp_path / "database.db")


@pytest.fixture
def dialup(tmp_path) -> Path:
    ensure_host()
    return build_dialup_deploy(tmp_path / "dialup-deploy.db")


# --- App Hosting Platform ---------------------------------------------------------------------


@pytest.mark.django_db
def test_app_hosting_platform_users_keep_passwords_roles_and_last_login(aph, legacy_hashers):
    report = run("app-hosting-platform", aph, "--time-zone", "Europe/Berlin")

    admin = User.objects.get(email="admin@admin.com")
    assert admin.is_staff and admin.is_active
    # 10:30 Berlin time in December is 09:30 UTC
    assert admin.last_login == datetime(2025, 12, 8, 9, 30, tzinfo=UTC)
    assert authenticate(email="admin@admin.com", password="old-admin-pass") == admin
    user = User.objects.get(email="user@example.com")
    assert not user.is_staff and user.last_login is None  # empty LastLogin
    assert authenticate(email="user@example.com", password="old-user-pass") == user
    # the duplicate-looking address merged into the first; its password is not kept
    assert User.objects.filter(email__iexact="user@example.com").count() == 1
    assert authenticate(email="User@Example.com", password="another-pass") is None
    assert "same address as #2" in report
    # not an address: skipped and reported; a non-bcrypt password: no usable password
    assert not User.objects.filter(email="not an address").exists()
    assert "System_Users #4: not a valid email address" in report
    zoe = User.objects.get(email="zoe@exämple.test")  # an unicode domain
    assert not zoe.has_usable_password() and not zoe.is_active and zoe.last_login is None
    assert "unreadable time 'garbage time'" in report


@pytest.mark.django_db
def test_app_hosting_platform_servers_domains_codes_and_activity(aph):
    report = run("app-hosting-platform", aph)

    user = User.objects.get(email="user@example.com")
    personal = Organization.objects.get(is_personal=True, memberships__user=user)
    sites = {s.name: s for s in Site.objects.filter(organization=personal)}
    # #5 belonged to the merged duplicate: it lands with the same person, unicode name kept
    assert set(sites) == {"My Web App", "API Server", "Old thing", "日本語のサイト"}
    assert sites["日本語のサイト"].slug == "server-5"
    assert sites["My Web App"].slug == "my-web-app"
    assert sites["Old thing"].deleted_at == datetime(2025, 11, 20, 8, 0, tzinfo=UTC)
    assert sites["My Web App"].deleted_at is None
    assert sites["My Web App"].created_at == datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
    assert all(s.desired_state == "stopped" for s in sites.values())
    assert "Hosting_VirtualServers #0: the HOST row" in report
    assert "Hosting_VirtualServers #4: its owner #99 does not exist" in report
    assert "Hosting_VirtualServers #6: its owner #4 was not imported" in report

    domains = {d.hostname: d for d in Domain.objects.all()}
    assert set(domains) == {"myapp.example.com", "api.example.com", "demo.project.org"}
    assert domains["api.example.com"].is_cloudflare and domains["api.example.com"].ssl_enabled
    assert not domains["demo.project.org"].ssl_enabled
    assert all(d.verified_at is None for d in domains.values())  # never routed unproven
    assert "Hosting_DomainNames #4: its server #42 is missing" in report
    assert "Hosting_DomainNames #5: its server was deleted" in report
    assert "Hosting_DomainNames #6: not a valid hostname" in report

    imported = AuditLog.objects.filter(action="legacy.activity").order_by("timestamp")
    assert [e.changes["message"] for e in imported] == [
        "User admin@admin.com logged in (IP: 10.0.0.1)",
        "Virtual server #1 created",
        'Domain name "x.example.com" added',
    ]
    assert all(e.changes["imported"] for e in imported)
    assert imported[1].actor == user and imported[1].organization == personal
    assert imported[2].actor is None and imported[2].actor_label == "legacy user #77"
    assert "System_RecentActivity #4: it has no readable time" in report
    assert AuditLog.objects.filter(action="legacy.import").count() == 1

    # the live code still signs someone up; the expired one was not brought over
    assert RegistrationCode.objects.count() == 1
    assert "System_RegistrationCodes #2: expired" in report
    account_services.register_with_code(
        code="abc12345", email="newcomer@example.test", password="a long new password 1"
    )
    assert "1 cached container rows not imported" in report


@pytest.mark.django_db(transaction=True)
def test_imported_activity_joins_the_audit_chain(aph):
    run("app-hosting-platform", aph)
    rows = AuditLog.objects.order_by("sequence").values()
    assert all(r["sequence"] is not None for r in rows)
    assert verify_rows(rows).ok
    assert AuditLog.objects.filter(action="legacy.activity").count() == 3


@pytest.mark.django_db
def test_dry_run_prints_the_same_report_and_writes_nothing(aph):
    before = (User.objects.count(), Site.objects.count(), AuditLog.objects.count())
    dry = run("app-hosting-platform", aph, "--dry-run")
    assert "dry run, nothing was written" in dry
    assert (User.objects.count(), Site.objects.count(), AuditLog.objects.count()) == before
    assert not LegacyRecord.objects.exists()
    real = run("app-hosting-platform", aph)
    assert dry.split("\n", 1)[1].replace("Would write", "Written") == real.split("\n", 1)[1]


@pytest.mark.django_db
def test_second_run_has_nothing_to_do(aph):
    run("app-hosting-platform", aph)
    counts = (User.objects.count(), Site.objects.count(), Domain.objects.count())
    again = run("app-hosting-platform", aph)
    assert "Nothing to do" in again
    assert (User.objects.count(), Site.objects.count(), Domain.objects.count()) == counts
    assert AuditLog.objects.filter(action="legacy.import").count() == 1


@pytest.mark.django_db
def test_a_target_holding_data_is_refused_without_force(aph, legacy_hashers):
    existing = make_user("user@example.com", password="the new system's password 1")
    with pytest.raises(CommandError, match=r"already holds 1 users.*--force"):
        run("app-hosting-platform", aph)
    assert not Site.objects.exists() and not LegacyRecord.objects.exists()

    report = run("app-hosting-platform", aph, "--force")
    assert "matched the existing user user@example.com" in report
    assert User.objects.filter(email__iexact="user@example.com").get() == existing
    # the account here keeps its own password; the old one does not sign in
    assert authenticate(email="user@example.com", password="old-user-pass") is None
    assert Site.objects.filter(organization__memberships__user=existing).count() == 4


@pytest.mark.django_db
def test_a_count_mismatch_before_commit_leaves_nothing(aph, monkeypatch):
    monkeypatch.setattr(base, "check_written", lambda report: ["hosting.site: 5 written, 4 found"])
    with pytest.raises(CommandError, match="counts do not match, nothing written"):
        run("app-hosting-platform", aph)
    assert not User.objects.filter(email="admin@admin.com").exists()
    assert not Site.objects.exists() and not AuditLog.objects.filter(action__startswith="legacy")


@pytest.mark.django_db
def test_sources_that_are_not_the_named_system_are_refused(tmp_path, aph):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CommandError, match="not a SQLite database"):
        run("app-hosting-platform", junk)
    with pytest.raises(CommandError, match="not a dialup-deploy database"):
        run("dialup-deploy", aph)
    with pytest.raises(CommandError, match="no such file"):
        run("dialup-deploy", tmp_path / "missing.db")
    with pytest.raises(CommandError, match="unknown time zone"):
        run("app-hosting-platform", aph, "--time-zone", "Mars/Olympus")


@pytest.mark.django_db
def test_sites_need_a_named_host_when_there_are_several(aph):
    from hosting.services import create_host

    create_host(actor=None, name="second", endpoint="unix:///nonexistent-2.sock")
    with pytest.raises(CommandError, match=r"name one with --host .*local, second"):
        run("app-hosting-platform", aph)
    run("app-hosting-platform", aph, "--host", "second")
    assert set(Site.objects.values_list("host__name", flat=True)) == {"second"}


# --- dialup-deploy ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_dialup_deploy_accounts_organizations_and_roles(dialup, legacy_hashers):
    report = run("dialup-deploy", dialup)

    ada = User.objects.get(email="ada@example.com")
    assert ada.is_staff and ada.display_name == "Ada Lovelace"
    assert ada.date_joined == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert authenticate(email="ada@example.com", password="ada-old-pass") == ada
    assert User.objects.get(email="bob@example.com").display_name == "bob"
    assert not User.objects.get(email__iexact="cy@example.com").is_active

    acme = Organization.objects.get(slug="acme")
    roles = dict(Membership.objects.filter(organization=acme).values_list("user__email", "role"))
    assert roles == {
        "ada@example.com": "owner",
        "bob@example.com": "admin",
        "CY@example.com": "member",
    }
    assert "unknown role 'wizard' became member" in report
    assert "organization_members #4: its user or organization was not imported" in report
    ghost = Organization.objects.get(slug="ghost")
    assert not ghost.memberships.exists()
    assert "its owner #50 was not imported" in report


@pytest.mark.django_db
def test_dialup_deploy_sites_limits_env_domains(dialup):
    report = run("dialup-deploy", dialup)

    shop = Site.objects.get(organization__slug="acme", slug="shop")
    assert shop.repository_url == "https://git.example.com/shop.git"
    assert (shop.build_command, shop.start_command, shop.internal_port) == ("make", "./run", 3000)
    assert (shop.limits.memory_mb, shop.limits.cpu_percent) == (384, 30)  # the newer row
    assert "a newer limits row of the same site wins" in report
    bob = User.objects.get(email="bob@example.com")
    blog = Site.objects.get(slug="bobs-blog")
    assert blog.organization.is_personal and blog.organization.memberships.get().user == bob
    assert blog.site_type == "static" and blog.limits.memory_mb == 512  # 1 MB: out of range
    assert "memory_mb 1 is out of range" in report
    weird = Site.objects.get(slug="weird")
    assert (weird.site_type, weird.internal_port, weird.branch) == ("docker", 8080, "dev")
    assert "sites #3: its owner #70 was not imported" in report

    secret = EnvironmentVariable.objects.get(site=shop, key="DATABASE_URL")
    assert secret.is_secret and "hunter2" not in secret.value
    assert crypto.decrypt(secret.value) == "postgres://shop:hunter2@db/shop"
    assert EnvironmentVariable.objects.get(site=shop, key="MODE").value == "production"
    assert "site_environment_variables #3: its name is not a valid variable name" in report
    assert "site_environment_variables #4: its site #3 was not imported" in report

    domains = {d.hostname: d for d in Domain.objects.filter(site=shop)}
    assert set(domains) == {"www.shop.example.com", "shop2.example.com", "shop.example.com"}
    assert domains["www.shop.example.com"].is_primary
    assert domains["www.shop.example.com"].verified_at == datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert not domains["shop2.example.com"].is_primary  # a second primary is not one
    assert not domains["shop2.example.com"].ssl_enabled
    assert domains["shop.example.com"].verified_at is None  # the site's own domain column
    assert "site_domains #3: its hostname is already used here" in report
    quota = OrganizationQuota.objects.get(organization=blog.organization)
    assert quota.max_sites >= 2


@pytest.mark.django_db
def test_dialup_deploy_history_deployments_logs_and_daily_usage(dialup):
    report = run("dialup-deploy", dialup)

    shop = Site.objects.get(slug="shop")
    deployments = list(Deployment.objects.filter(site=shop).order_by("number"))
    assert [(d.number, d.status, d.commit_message) for d in deployments] == [
        (1, "succeeded", "first"),
        (2, "failed", "second"),
        (3, "failed", "third"),
    ]
    assert deployments[0].triggered_by.email == "ada@example.com"
    assert deployments[0].build_time_seconds == 42
    assert deployments[0].finished_at == datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert "imported unfinished (status 'building'" in deployments[1].error
    log = DeploymentLogChunk.objects.get(deployment=deployments[2])
    assert log.text == "boom ☃\n" and deployments[2].log_size == len("boom ☃\n".encode())
    assert all(d.trigger == "import" for d in deployments)

    days = {d.date.isoformat(): d for d in DailyUsage.objects.filter(site=shop)}
    assert set(days) == {"2025-06-01", "2025-06-02"}
    assert days["2025-06-01"].total_requests == 1000 and days["2025-06-01"].avg_memory_mb == 100.5
    assert days["2025-06-02"].avg_response_time_ms is None
    assert "site_resource_usage #1: raw 30-second samples are not imported" in report
    assert "system_config #1: system settings come from" in report
    for table in ("deployments", "site_usage_daily"):
        assert f"{table} #4" in report or f"{table} #3" in report


@pytest.mark.django_db
def test_dialup_deploy_twice_and_dry_run(dialup):
    dry = run("dialup-deploy", dialup, "--dry-run")
    assert not User.objects.filter(email="ada@example.com").exists()
    run("dialup-deploy", dialup)
    assert "Nothing to do" in run("dialup-deploy", dialup)
    assert "Would write" in dry and "4 hosting.deployment" not in dry
    assert Deployment.objects.count() == 3
