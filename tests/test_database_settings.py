"""The database runs the way the design card says: SQLite in WAL with IMMEDIATE transactions."""

import pytest
from django.db import connection


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite-only settings")
def test_sqlite_runs_in_wal_with_busy_timeout_and_immediate_transactions(db):
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 5000
        cursor.execute("PRAGMA foreign_keys")
        assert cursor.fetchone()[0] == 1
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL-only settings")
def test_postgresql_checks_connections_before_reuse(db):
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
