"""manage.py backup and restore on the database this run uses (SQLite, then PostgreSQL):
a backup taken while a writer runs restores into a fresh database whose row counts are the
manifest's, where the app starts, serves a token made before the backup, decrypts the
secrets with the same keys and verifies its audit chain. A backup that does not match its
manifest, the wrong keys or a non-empty target are refused, leaving the target as it was."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from hosting.models import EnvironmentVariable
from tests import docker_engines
from tests.factories import make_org, make_token, make_user
from tests.hosting.factories import make_env, site_url, the_site
from tests.integration import processes

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[1]
SECRET_VALUE = "postgres://app:Hunter-Quartz-51@db/app"
WRITER_MAX_ROWS = 3000
WRITER_MAX_SECONDS = 20.0


def keys_env(**override: str) -> dict[str, str]:
    keys = {
        "SECRET_KEY": settings.SECRET_KEY,
        "TOKEN_HASH_KEY": settings.TOKEN_HASH_KEY,
        "AUDIT_CHAIN_KEY": settings.AUDIT_CHAIN_KEY,
        "ENV_ENCRYPTION_KEYS": ",".join(settings.ENV_ENCRYPTION_KEYS),
    }
    keys.update(override)
    return keys


@contextlib.contextmanager
def fresh_database(tmp_path: Path):
    """The URL of a new, empty database on the engine this run uses; dropped afterwards."""
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / f'restored-{uuid.uuid4().hex[:6]}.sqlite3'}"
        return
    name = f"hp_restore_{uuid.uuid4().hex[:10]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    url = processes.database_url().rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(*args: str, database_url: str, tmp_path: Path, **env: str):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=processes.child_env(
            DATABASE_URL=database_url, HOSTPANEL_VAR_DIR=str(tmp_path / "var"), **env
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_manifest(path: Path) -> dict:
    with tarfile.open(path) as tar, tar.extractfile("manifest.json") as member:
        return json.loads(member.read())


def _count(conn, table: str) -> int:
    return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # noqa: S608


def row_counts(database_url: str) -> dict[str, int]:
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        counts = {t: _count(conn, t) for t in tables}
        conn.close()
        return counts
    import psycopg

    with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return {t: _count(conn, t) for t in tables}


class Writer(threading.Thread):
    """Sets env vars on a site through the service (each an audit row too), until stopped
    or bounded by count and time."""

    def __init__(self, site):
        super().__init__(daemon=True)
        self.site, self.written, self.error = site, 0, None
        self.stop = threading.Event()

    def run(self):
        deadline = time.monotonic() + WRITER_MAX_SECONDS
        try:
            while (
                not self.stop.is_set()
                and self.written < WRITER_MAX_ROWS
                and time.monotonic() < deadline
            ):
                make_env(self.site, f"LOAD_{self.written}", "x" * 40, is_secret=True)
                self.written += 1
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            connection.close()


def call_json(url: str, token: str, method: str = "GET"):
    request = urllib.request.Request(
        url, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_a_backup_taken_under_writes_restores_and_serves(tmp_path):
    owner = make_user(is_staff=False)
    org = make_org(owner, "Backed Up", slug="backed-up")
    site = the_site(org)
    secret = make_env(site, "DATABASE_URL", SECRET_VALUE, is_secret=True)
    token = make_token(owner, scopes=("read", "write", "secrets:read"))
    writer = Writer(site)
    writer.start()
    try:
        processes.wait_until(lambda: writer.written >= 20, timeout=30, what="writes")
        out = io.StringIO()
        call_command("backup", str(tmp_path / "b.tar"), stdout=out)
        written_at_backup = writer.written
        processes.wait_until(
            lambda: writer.written >= written_at_backup + 5, timeout=30, what="more writes"
        )
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    assert writer.error is None, writer.error
    manifest = read_manifest(tmp_path / "b.tar")
    loaded = manifest["row_counts"]["hosting_environmentvariable"]
    # The backup is a snapshot from between the writes: not the rows before, nor the end.
    assert 1 + 20 <= loaded < 1 + writer.written, (loaded, writer.written)
    assert (tmp_path / "b.tar").stat().st_mode & 0o077 == 0
    assert SECRET_VALUE.encode() not in (tmp_path / "b.tar").read_bytes()

    with fresh_database(tmp_path) as url:
        restored = manage("restore", str(tmp_path / "b.tar"), database_url=url,
                          tmp_path=tmp_path, **keys_env())  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        assert "counts match the manifest" in restored.stdout
        assert row_counts(url) == manifest["row_counts"]
        verified = manage("audit_verify", database_url=url, tmp_path=tmp_path, **keys_env())
        assert verified.returncode == 0, verified.stderr

        port = docker_engines.free_port()
        web = processes.Process(
            "web-restored",
            [sys.executable, "-m", "gunicorn", "hostpanel.wsgi", "-b", f"127.0.0.1:{port}"],
            processes.child_env(
                DATABASE_URL=url, HOSTPANEL_VAR_DIR=str(tmp_path / "var"), **keys_env()
            ),
            tmp_path,
        )
        try:
            web.wait_for_log("Booting worker", timeout=30)
            base = f"http://127.0.0.1:{port}"
            processes.wait_until(lambda: _answers(base), timeout=30, what="the restored app")
            status, body = call_json(f"{base}{site_url(org, part='env')}?page_size=1", token)
            assert status == 200 and body["count"] == loaded
            status, body = call_json(
                f"{base}{site_url(org, part=f'env/{secret.pk}/reveal')}", token, "POST"
            )
            assert status == 200 and body["value"] == SECRET_VALUE
        finally:
            web.stop()


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(f"{base}/api/v1/", timeout=2)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _rewrite_manifest(source: Path, target: Path, change) -> None:
    with tarfile.open(source) as old, tarfile.open(target, "w") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read()
            if member.name == "manifest.json":
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))


def test_restore_refuses_what_it_cannot_restore_whole(tmp_path):
    owner = make_user()
    make_env(the_site(make_org(owner)), "TOKEN", "s3cret-value-1", is_secret=True)
    call_command("backup", str(tmp_path / "b.tar"), stdout=io.StringIO())
    good = tmp_path / "b.tar"

    def one_more_row(manifest):
        manifest["row_counts"]["hosting_site"] += 1

    _rewrite_manifest(good, tmp_path / "count.tar", one_more_row)
    corrupt = tmp_path / "corrupt.tar"
    _rewrite_manifest(good, corrupt, lambda m: m.update(sha256="0" * 64))

    with fresh_database(tmp_path) as url:
        bad_count = manage("restore", str(tmp_path / "count.tar"), database_url=url,
                           tmp_path=tmp_path, **keys_env())  # fmt: skip
        assert bad_count.returncode != 0
        assert "hosting_site" in bad_count.stderr and "manifest" in bad_count.stderr
        assert row_counts(url) == {}  # counted before commit: nothing was written

        bad_sha = manage("restore", str(corrupt), database_url=url, tmp_path=tmp_path,
                         **keys_env())  # fmt: skip
        assert bad_sha.returncode != 0 and "SHA-256" in bad_sha.stderr

        wrong_keys = manage("restore", str(good), database_url=url, tmp_path=tmp_path,
                            **keys_env(ENV_ENCRYPTION_KEYS="another-key-" + "k" * 40))  # fmt: skip
        assert wrong_keys.returncode != 0
        assert "ENV_ENCRYPTION_KEYS lacks" in wrong_keys.stderr
        assert row_counts(url) == {}

        not_a_backup = tmp_path / "junk.tar"
        not_a_backup.write_bytes(b"not a tar file")
        junk = manage("restore", str(not_a_backup), database_url=url, tmp_path=tmp_path,
                      **keys_env())  # fmt: skip
        assert junk.returncode != 0 and "not a hostpanel backup" in junk.stderr

        first = manage("restore", str(good), database_url=url, tmp_path=tmp_path, **keys_env())
        assert first.returncode == 0, first.stderr
        again = manage("restore", str(good), database_url=url, tmp_path=tmp_path, **keys_env())
        assert again.returncode != 0 and "not empty" in again.stderr


def test_keys_stay_out_of_a_backup_unless_asked(tmp_path):
    make_env(the_site(make_org(make_user())), "API_KEY", "value-9", is_secret=True)
    call_command("backup", str(tmp_path / "plain.tar"), stdout=io.StringIO())
    call_command("backup", str(tmp_path / "keys.tar"), "--include-keys", stdout=io.StringIO())
    plain = (tmp_path / "plain.tar").read_bytes()
    for key in [settings.TOKEN_HASH_KEY, settings.AUDIT_CHAIN_KEY, *settings.ENV_ENCRYPTION_KEYS]:
        assert key.encode() not in plain
    manifest = read_manifest(tmp_path / "plain.tar")
    assert len(manifest["keys_needed"]["ENV_ENCRYPTION_KEYS"]) == 1
    assert manifest["keys_needed"]["secrets_stored"] == EnvironmentVariable.objects.count()

    keys_file = tmp_path / "keys.env"
    out = io.StringIO()
    call_command("restore", str(tmp_path / "keys.tar"), "--write-keys", str(keys_file), stdout=out)
    lines = dict(line.split("=", 1) for line in keys_file.read_text().splitlines())
    assert lines["AUDIT_CHAIN_KEY"] == settings.AUDIT_CHAIN_KEY
    assert lines["ENV_ENCRYPTION_KEYS"] == ",".join(settings.ENV_ENCRYPTION_KEYS)
    assert keys_file.stat().st_mode & 0o077 == 0
