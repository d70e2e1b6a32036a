"""Database helpers shared by the apps."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def real_sqlite_parameter_limit() -> Iterator[None]:
    """Let bulk_create use the SQLite library's real parameter limit, for this block.

    Django 5.2 assumes SQLite's historic 999-variable limit (`max_query_params`), so a
    14-column upsert of 500 containers became 8 statements (sync) and a tick of 200 usage
    samples 4 (collection). SQLite 3.32+ allows 32,766 (Debian builds 250,000); Django 6.0
    reads the real limit (ticket #36143). Until then it is read here and restored
    afterwards, so no other code sees the change. Thread-safe: each thread has its own
    connection and features object.
    """
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    real = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    features = connection.features
    had_own = "max_query_params" in vars(features)
    saved = features.max_query_params
    features.max_query_params = max(saved, real)
    try:
        yield
    finally:
        if had_own:
            features.max_query_params = saved
        else:
            del features.max_query_params


def in_transaction() -> bool:
    """Whether this thread is inside a transaction of its own (the test suite's wrapping
    one does not count): where no engine or proxy call may be made (DESIGN.md, "Control
    loop"), since it could hold SQLite's write lock, or a PostgreSQL connection idle in
    transaction, for its whole timeout."""
    blocks = getattr(connection, "atomic_blocks", [])
    return connection.in_atomic_block and any(not b._from_testcase for b in blocks)
