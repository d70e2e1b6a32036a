"""Secrets at rest: every kind of secret the panel handles is made through the API, then
looked for in the database file (SQLite) or a dump (PostgreSQL), in everything the panel
logged meanwhile, and in the audit rows. Not one is found in clear."""

from __future__ import annotations

import logging
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Organization
from audit.models import AuditLog
from hosting import services
from hosting.models import DockerHost
from tests.conftest import client_for
from tests.factories import PASSWORD as FACTORY_PASSWORD
from tests.factories import make_user
from tests.hosting.factories import the_site

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "Xylophone-Quartz-7731!"


def stored_bytes() -> bytes:
    """Everything the database holds, as bytes."""
    if connection.vendor == "sqlite":
        name = Path(connection.settings_dict["NAME"])
        files = [name, Path(f"{name}-wal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    url = connection.settings_dict
    dump = subprocess.run(
        ["pg_dump", "-h", url["HOST"] or "127.0.0.1", "-p", str(url["PORT"] or 5432),
         "-U", url["USER"] or "postgres", "--data-only", url["NAME"]],
        capture_output=True, check=True, timeout=120,
        env={**os.environ, "PGPASSWORD": url["PASSWORD"] or ""},
    )  # fmt: skip
    return dump.stdout


def test_no_secret_is_stored_logged_or_audited_in_clear(caplog, settings):
    settings.NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE = True
    caplog.set_level(logging.DEBUG)
    staff = make_user("staff@example.test", is_staff=True)
    owner = make_user("owner@example.test")
    org_slug = client_for(owner).post("/api/v1/organizations/", {"name": "Vault"}).json()["slug"]
    org = Organization.objects.get(slug=org_slug)
    services.create_host(actor=None, name="idle", endpoint="unix:///nonexistent/docker.sock")
    site = the_site(org)
    admin = client_for(owner)
    base = f"/api/v1/organizations/{org_slug}/"
    found: dict[str, str] = {}

    code = client_for(staff).post("/api/v1/registration-code/").json()["code"]
    found["registration code"] = code
    newcomer = APIClient().post(
        "/api/v1/register/",
        {"code": code, "email": "new@example.test", "password": PASSWORD},
        format="json",
    )
    assert newcomer.status_code == 201, newcomer.content
    found["password"] = PASSWORD
    found["API token"] = admin.post(
        "/api/v1/tokens/", {"name": "ci", "scopes": ["read"]}, format="json"
    ).json()["token"]
    env_secret = "env-secret-Vm3k9Qz"
    made = admin.post(
        f"{base}sites/{site.slug}/env/",
        {"key": "API_KEY", "value": env_secret, "is_secret": True},
        format="json",
    )
    assert made.status_code == 201, made.content
    found["env secret"] = env_secret
    found["git webhook secret"] = admin.post(f"{base}sites/{site.slug}/webhook/").json()["secret"]
    found["notification webhook secret"] = admin.post(
        f"{base}notification-webhooks/",
        {"url": "http://127.0.0.1:9/x", "events": ["deployment.failed"]},
        format="json",
    ).json()["secret"]
    found["invitation code"] = admin.post(
        f"{base}invitations/", {"email": "guest@example.test", "role": "viewer"}, format="json"
    ).json()["code"]
    expires = (timezone.now() + timedelta(days=1)).isoformat()
    link = admin.post(
        f"{base}sites/{site.slug}/share-links/", {"expires_at": expires}, format="json"
    )
    found["share link token"] = link.json()["token"]
    DockerHost.objects.update(proxy_admin="unix:///nonexistent/admin.sock")  # a site URL
    admin.patch(f"{base}sites/{site.slug}/", {"is_private": True}, format="json")
    visit = admin.get(f"/visit/{site.pk}/")
    assert visit.status_code == 302, visit.content
    found["visit pass"] = urlsplit(visit["Location"]).query.split("hp_pass=")[1]
    enrolment = admin.post("/api/v1/me/two-factor/", {"password": FACTORY_PASSWORD}, format="json")
    found["authenticator secret"] = enrolment.json()["secret"]
    confirmed = admin.post(
        "/api/v1/me/two-factor/confirm/",
        {"code": pyotp.TOTP(found["authenticator secret"]).now()},
        format="json",
    )
    found["recovery code"] = confirmed.json()["recovery_codes"][0].replace("-", "")
    assert len(found) >= 11

    admin.post(
        f"{base}sites/{site.slug}/env/",
        {"key": "PLAIN", "value": "plain-visible-4471"},
        format="json",
    )
    stored = stored_bytes()
    assert b"plain-visible-4471" in stored  # the search sees what is stored in clear
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    audited = "\n".join(
        f"{e.changes} {e.target_label} {e.actor_label}" for e in AuditLog.objects.all()
    )
    hits = [
        f"{kind} in {where}"
        for kind, secret in found.items()
        for where, text in (
            ("the database", stored),
            ("the logs", logged.encode()),
            ("the audit rows", audited.encode()),
        )
        if secret.encode() in text
    ]
    assert hits == []
