"""Backups that restore: one tar file holding the database and a manifest.

SQLite is copied with its online backup API in one step, a consistent snapshot that WAL
lets writers go on beside; PostgreSQL with `pg_dump` in custom format, from a snapshot
exported by a repeatable-read transaction whose row counts go in the manifest. The manifest
names the schema (the migrations applied), the row count of every table, the dump's SHA-256
and the fingerprints of the keys needed to read what is stored (never the keys themselves,
unless `include_keys`). Restore goes into an empty database only, and checks the counts
before it commits: a backup that does not match its manifest leaves the target empty.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from hostpanel import crypto

FORMAT = 1
MANIFEST = "manifest.json"
KEYS = "keys.json"
SQLITE_MEMBER = "database.sqlite3.gz"
POSTGRES_MEMBER = "database.pgdump"
PG_TIMEOUT_SECONDS = 3600


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why."""


def fingerprint(key: str) -> str:
    """A short name for a key that does not reveal it."""
    return hashlib.sha256(b"hostpanel-key:" + key.encode()).hexdigest()[:16]


def _key_values() -> dict[str, Any]:
    return {
        "SECRET_KEY": settings.SECRET_KEY,
        "TOKEN_HASH_KEY": settings.TOKEN_HASH_KEY,
        "AUDIT_CHAIN_KEY": settings.AUDIT_CHAIN_KEY,
        "ENV_ENCRYPTION_KEYS": list(settings.ENV_ENCRYPTION_KEYS),
    }


def _keys_needed() -> dict[str, Any]:
    """Fingerprints of the keys this database needs: the token and chain keys always, the
    encryption keys that decrypt at least one stored secret."""
    from hosting.models import EnvironmentVariable
    from notifications.models import Webhook

    tokens = list(
        EnvironmentVariable.objects.filter(is_secret=True).values_list("value", flat=True)
    ) + list(Webhook.objects.values_list("secret_encrypted", flat=True))
    used: set[str] = set()
    unreadable = 0
    for token in tokens:
        key = crypto.decrypting_key(token)
        if key is None:
            unreadable += 1
        else:
            used.add(key)
    return {
        "TOKEN_HASH_KEY": fingerprint(settings.TOKEN_HASH_KEY),
        "AUDIT_CHAIN_KEY": fingerprint(settings.AUDIT_CHAIN_KEY),
        "SECRET_KEY": fingerprint(settings.SECRET_KEY),
        "ENV_ENCRYPTION_KEYS": sorted(fingerprint(k) for k in used),
        "secrets_stored": len(tokens),
        "secrets_unreadable_now": unreadable,
    }


def _table_names(conn: Any) -> list[str]:
    """Every table of the database behind a DB-API connection (SQLite or PostgreSQL)."""
    cur = conn.cursor()
    if isinstance(conn, sqlite3.Connection):
        cur.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    else:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
    return sorted(row[0] for row in cur.fetchall())


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _row_counts(conn: Any) -> dict[str, int]:
    cur = conn.cursor()
    counts = {}
    for table in _table_names(conn):
        cur.execute(f"SELECT count(*) FROM {_quote(table)}")  # noqa: S608 (quoted name)
        counts[table] = cur.fetchone()[0]
    return counts


def _schema(conn: Any) -> dict[str, list[str]]:
    cur = conn.cursor()
    cur.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    schema: dict[str, list[str]] = {}
    for app, name in cur.fetchall():
        schema.setdefault(app, []).append(name)
    return schema


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pg_env() -> dict[str, str]:
    s = connection.settings_dict
    return {
        **os.environ,
        "PGHOST": s.get("HOST") or "127.0.0.1",
        "PGPORT": str(s.get("PORT") or 5432),
        "PGUSER": s.get("USER") or "postgres",
        "PGPASSWORD": s.get("PASSWORD") or "",
        "PGDATABASE": s["NAME"],
    }


def _pg_connect() -> Any:
    import psycopg

    env = _pg_env()
    return psycopg.connect(
        host=env["PGHOST"],
        port=env["PGPORT"],
        user=env["PGUSER"],
        password=env["PGPASSWORD"],
        dbname=env["PGDATABASE"],
        autocommit=True,  # so BEGIN below is the transaction's own, with its isolation
    )


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(  # noqa: S603 (our own argv, no shell)
            args, capture_output=True, check=True, timeout=PG_TIMEOUT_SECONDS, **kwargs
        )
    except FileNotFoundError as exc:
        raise BackupError(f"{args[0]} is not installed: {exc}") from None
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace").strip()
        raise BackupError(f"{args[0]} failed (exit {exc.returncode}): {stderr}") from None


def _dump_sqlite(work: Path) -> tuple[Path, dict[str, int], dict[str, list[str]]]:
    copy = work / "copy.sqlite3"
    source = sqlite3.connect(f"file:{connection.settings_dict['NAME']}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)  # all pages in one step: one consistent snapshot
        counts, schema = _row_counts(target), _schema(target)
    finally:
        target.close()
        source.close()
    member = work / SQLITE_MEMBER
    with open(copy, "rb") as raw, gzip.open(member, "wb", compresslevel=6) as packed:
        shutil.copyfileobj(raw, packed)
    copy.unlink()
    return member, counts, schema


def _dump_postgres(work: Path) -> tuple[Path, dict[str, int], dict[str, list[str]]]:
    member = work / POSTGRES_MEMBER
    with _pg_connect() as conn:
        # The counts and pg_dump see the same snapshot, whatever writers do meanwhile.
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        counts, schema = _row_counts(conn), _schema(conn)
        _run(
            ["pg_dump", "--format=custom", f"--snapshot={row[0]}", "--no-owner",
             "--no-privileges", f"--file={member}"],
            env=_pg_env(),
        )  # fmt: skip
        conn.execute("ROLLBACK")
    return member, counts, schema


def backup(output: Path, *, include_keys: bool = False) -> dict[str, Any]:
    """Write a backup of the default database to OUTPUT; return its manifest."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".backup-") as tmp:
        work = Path(tmp)
        if connection.vendor == "sqlite":
            member, counts, schema = _dump_sqlite(work)
        elif connection.vendor == "postgresql":
            member, counts, schema = _dump_postgres(work)
        else:
            raise BackupError(f"no backup for the {connection.vendor} database")
        manifest = {
            "format": FORMAT,
            "created_at": timezone.now().isoformat(),
            "database": connection.vendor,
            "member": member.name,
            "sha256": _sha256(member),
            "bytes": member.stat().st_size,
            "schema": schema,
            "row_counts": counts,
            "keys_needed": _keys_needed(),
            "keys_included": include_keys,
        }
        partial = work / "backup.tar"
        with tarfile.open(partial, "w") as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            if include_keys:
                _add_bytes(tar, KEYS, json.dumps(_key_values(), indent=2).encode())
            tar.add(member, arcname=member.name)
        partial.chmod(0o600)  # it holds password hashes and encrypted secrets
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, output)
    return manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(timezone.now().timestamp())
    tar.addfile(info, io.BytesIO(data))


@dataclass
class Archive:
    manifest: dict[str, Any]
    keys: dict[str, Any] | None
    database: Path


def read_archive(path: Path, work: Path) -> Archive:
    """Open a backup file, extract its database into WORK and check it against the manifest's
    SHA-256."""
    try:
        tar = tarfile.open(path, "r")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{path} is not a hostpanel backup: {exc}") from None
    with tar:
        try:
            manifest = json.loads(_member_bytes(tar, MANIFEST))
            keys = json.loads(_member_bytes(tar, KEYS)) if KEYS in tar.getnames() else None
            if manifest.get("format") != FORMAT:
                raise BackupError(f"backup format {manifest.get('format')!r} is not {FORMAT}")
            name = manifest["member"]
            if name not in (SQLITE_MEMBER, POSTGRES_MEMBER):
                raise BackupError(f"unexpected database member {name!r}")
            source = tar.extractfile(name)
            if source is None:
                raise BackupError(f"{name} is missing from the backup")
            database = work / name
            with source, open(database, "wb") as out:
                shutil.copyfileobj(source, out)
        except (KeyError, ValueError, tarfile.TarError) as exc:
            raise BackupError(f"{path} is not a complete hostpanel backup: {exc}") from None
    if _sha256(database) != manifest["sha256"]:
        raise BackupError("the database in the backup does not match its manifest's SHA-256")
    return Archive(manifest, keys, database)


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise KeyError(name)
    with member:
        return member.read()


def key_problems(manifest: dict[str, Any]) -> list[str]:
    """What the configured keys cannot do with this backup's data."""
    needed = manifest["keys_needed"]
    problems = []
    for name in ("TOKEN_HASH_KEY", "AUDIT_CHAIN_KEY"):
        if needed[name] != fingerprint(getattr(settings, name)):
            problems.append(
                f"{name} is not the key of the backup (fingerprint {needed[name]}): "
                + ("API tokens and codes will not match" if name == "TOKEN_HASH_KEY"
                   else "audit_verify will fail")
            )  # fmt: skip
    configured = {fingerprint(k) for k in settings.ENV_ENCRYPTION_KEYS}
    missing = [fp for fp in needed["ENV_ENCRYPTION_KEYS"] if fp not in configured]
    if missing:
        problems.append(
            "ENV_ENCRYPTION_KEYS lacks the key(s) with fingerprint "
            f"{', '.join(missing)}: secret env values and webhook secrets will not decrypt"
        )
    return problems


def schema_problems(manifest: dict[str, Any]) -> list[str]:
    """Migrations in the backup that this code does not have (a backup of a newer version)."""
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    return [
        f"{app}.{name}"
        for app, names in manifest["schema"].items()
        for name in names
        if (app, name) not in known
    ]


def target_tables() -> list[str]:
    return connection.introspection.table_names()


def restore(path: Path) -> dict[str, Any]:
    """Restore a backup into the default database, which must be empty; return the manifest.
    Raises BackupError, leaving the target as it was, when anything does not match."""
    if target_tables():
        raise BackupError(
            f"the target database is not empty ({len(target_tables())} tables); restore "
            "goes into an empty database only"
        )
    with tempfile.TemporaryDirectory(prefix="hostpanel-restore-") as tmp:
        archive = read_archive(path, Path(tmp))
        manifest = archive.manifest
        if manifest["database"] != connection.vendor:
            raise BackupError(
                f"this is a {manifest['database']} backup; the target is {connection.vendor}"
            )
        if connection.vendor == "sqlite":
            _restore_sqlite(archive)
        else:
            _restore_postgres(archive)
    connection.close()
    return manifest


def _count_mismatches(counts: dict[str, int], expected: dict[str, int]) -> list[str]:
    return [
        f"{table}: {counts.get(table)} rows, {want} in the manifest"
        for table, want in sorted(expected.items())
        if counts.get(table) != want
    ]


def _restore_sqlite(archive: Archive) -> None:
    unpacked = archive.database.with_suffix("")
    try:
        with gzip.open(archive.database, "rb") as packed, open(unpacked, "wb") as raw:
            shutil.copyfileobj(packed, raw)
    except (OSError, EOFError) as exc:
        raise BackupError(f"the database in the backup cannot be unpacked: {exc}") from None
    source = sqlite3.connect(unpacked)
    try:
        if source.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError("the database in the backup fails SQLite's integrity check")
        # Counted before anything is written to the target.
        mismatches = _count_mismatches(_row_counts(source), archive.manifest["row_counts"])
        if mismatches:
            raise BackupError("row counts do not match the manifest: " + "; ".join(mismatches))
        connection.close()
        target = sqlite3.connect(connection.settings_dict["NAME"])
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _restore_postgres(archive: Archive) -> None:
    script = archive.database.with_suffix(".sql")
    _run(["pg_restore", "--no-owner", "--no-privileges", f"--file={script}",
          str(archive.database)])  # fmt: skip
    # The count check runs inside the restore's one transaction: a mismatch rolls it all back.
    checks = archive.database.with_suffix(".check.sql")
    lines = ["DO $check$ DECLARE n bigint; BEGIN"]
    for table, want in sorted(archive.manifest["row_counts"].items()):
        quoted = "public." + _quote(table)
        literal = table.replace("'", "''")
        lines.append(
            f"  SELECT count(*) INTO n FROM {quoted}; IF n <> {int(want)} THEN RAISE "  # noqa: S608
            f"EXCEPTION 'row count of {literal}: % restored, {int(want)} in the manifest', n;"
            " END IF;"
        )
    lines.append("END $check$;")
    checks.write_text("\n".join(lines) + "\n")
    connection.close()
    _run(["psql", "--no-psqlrc", "--quiet", "--single-transaction", "-v", "ON_ERROR_STOP=1",
          "-f", str(script), "-f", str(checks)], env=_pg_env())  # fmt: skip
