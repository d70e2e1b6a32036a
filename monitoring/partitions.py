"""Usage samples partitioned by month on PostgreSQL (seed 002's "monthly tables").

The table is declaratively partitioned by RANGE on "timestamp": one partition per calendar
month (UTC) and a DEFAULT one for anything outside them, so an insert never fails. The
primary key is (id, "timestamp") — PostgreSQL wants the partition key in it — while Django
keeps addressing rows by id alone (a sequence makes it unique). Retention drops a whole
month once every row in it is past the cutoff (no DELETE, no vacuum debt); the month that
straddles the cutoff is trimmed by the batched DELETE as before. SQLite is unchanged:
every function here does nothing there.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from django.db import connection, transaction
from django.utils import timezone

log = logging.getLogger(__name__)

TABLE = "monitoring_usagesample"
DEFAULT = f"{TABLE}_default"
MONTHS_AHEAD = 2


def enabled() -> bool:
    return connection.vendor == "postgresql"


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{TABLE}_y{month.year}m{month.month:02d}"


def _bound(month: date) -> str:
    return datetime(month.year, month.month, 1, tzinfo=UTC).isoformat()


def is_partitioned(cursor, table: str = TABLE) -> bool:
    cursor.execute(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
        [table],
    )
    return cursor.fetchone() is not None


def months(cursor) -> dict[date, str]:
    """The monthly partitions that exist: first day of the month -> table name."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        [TABLE],
    )
    found = {}
    prefix = f"{TABLE}_y"
    for (name,) in cursor.fetchall():
        if name.startswith(prefix):
            year, month = name[len(prefix) :].split("m")
            found[date(int(year), int(month), 1)] = name
    return found


def _create_month(cursor, month: date, parent: str = TABLE) -> str:
    """A month's partition; rows of that month already in DEFAULT move into it (PostgreSQL
    refuses a new partition while DEFAULT holds rows of its range)."""
    name = partition_name(month)
    low, high = _bound(month), _bound(next_month(month))
    cursor.execute(
        f'SELECT EXISTS (SELECT 1 FROM {_quote(DEFAULT)} WHERE "timestamp" >= %s '  # noqa: S608
        'AND "timestamp" < %s)',
        [low, high],
    )
    stranded = cursor.fetchone()[0]
    if stranded:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # pending checks block a DETACH
        cursor.execute(f"ALTER TABLE {_quote(parent)} DETACH PARTITION {_quote(DEFAULT)}")
    cursor.execute(
        f"CREATE TABLE {_quote(name)} PARTITION OF {_quote(parent)} "
        f"FOR VALUES FROM ('{low}') TO ('{high}')"
    )
    if stranded:
        cursor.execute(
            f"WITH moved AS (DELETE FROM {_quote(DEFAULT)} "  # noqa: S608
            'WHERE "timestamp" >= %s AND "timestamp" < %s RETURNING *) '
            f"INSERT INTO {_quote(name)} SELECT * FROM moved",
            [low, high],
        )
        cursor.execute(f"ALTER TABLE {_quote(parent)} ATTACH PARTITION {_quote(DEFAULT)} DEFAULT")
    return name


def ensure(now: datetime | None = None, ahead: int = MONTHS_AHEAD) -> list[str]:
    """Partitions for this month and the next `ahead` ones; returns those it created."""
    if not enabled():
        return []
    month = month_start((now or timezone.now()).astimezone(UTC).date())
    created = []
    with transaction.atomic(), connection.cursor() as cursor:
        if not is_partitioned(cursor):
            return []
        have = months(cursor)
        for _ in range(ahead + 1):
            if month not in have:
                created.append(_create_month(cursor, month))
            month = next_month(month)
    if created:
        log.info("usage samples: partitions created: %s", created)
    return created


def drop_before(cutoff: datetime) -> list[str]:
    """Drop the monthly partitions whose every row is older than `cutoff`."""
    if not enabled():
        return []
    dropped = []
    with transaction.atomic(), connection.cursor() as cursor:
        if not is_partitioned(cursor):
            return []
        # Deferred foreign-key checks of this transaction's own inserts would block the DROP.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for month, name in sorted(months(cursor).items()):
            if datetime(*next_month(month).timetuple()[:3], tzinfo=UTC) <= cutoff:
                cursor.execute(f"DROP TABLE {_quote(name)}")
                dropped.append(name)
    if dropped:
        log.info("usage samples: partitions dropped: %s", dropped)
    return dropped


# --- the migration ------------------------------------------------------------------------------


def _indexes_and_foreign_keys(cursor, table: str) -> tuple[list, list]:
    """The table's secondary indexes (their CREATE statements) and foreign keys."""
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
        "AND schemaname = current_schema() AND indexname <> %s",
        [table, f"{table}_pkey"],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f'",
        [table],
    )
    return indexes, cursor.fetchall()


def _recreate(cursor, table: str, indexes: list, foreign_keys: list) -> None:
    for _name, definition in indexes:
        cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(name)} {definition}")


def partition_table(cursor, now: datetime) -> None:
    """Turn the plain table into a partitioned one holding the same rows, indexes, foreign
    keys and id sequence (monitoring migration 0006; PostgreSQL only)."""
    table, work = TABLE, f"{TABLE}_partitioned"
    indexes, foreign_keys = _indexes_and_foreign_keys(cursor, table)
    cursor.execute(f'SELECT min("timestamp"), max(id) FROM {_quote(table)}')  # noqa: S608
    oldest, last_id = cursor.fetchone()

    sequence = f"{work}_id_seq"
    cursor.execute(f"CREATE SEQUENCE {_quote(sequence)}")
    if last_id:
        cursor.execute("SELECT setval(%s, %s)", [sequence, last_id])
    cursor.execute(
        f"CREATE TABLE {_quote(work)} (LIKE {_quote(table)} INCLUDING DEFAULTS "
        f'INCLUDING CONSTRAINTS) PARTITION BY RANGE ("timestamp")'
    )
    cursor.execute(
        f"ALTER TABLE {_quote(work)} ALTER COLUMN id SET DEFAULT nextval('{sequence}'), "
        f'ADD PRIMARY KEY (id, "timestamp")'
    )
    cursor.execute(f"CREATE TABLE {_quote(DEFAULT)} PARTITION OF {_quote(work)} DEFAULT")
    month = month_start((oldest or now).astimezone(UTC).date())
    last = month_start(now.astimezone(UTC).date())
    for _ in range(MONTHS_AHEAD):
        last = next_month(last)
    while month <= last:
        _create_month(cursor, month, parent=work)
        month = next_month(month)
    cursor.execute(f"INSERT INTO {_quote(work)} SELECT * FROM {_quote(table)}")  # noqa: S608
    cursor.execute(f"DROP TABLE {_quote(table)}")
    cursor.execute(f"ALTER TABLE {_quote(work)} RENAME TO {_quote(table)}")
    cursor.execute(f"ALTER INDEX {_quote(work + '_pkey')} RENAME TO {_quote(table + '_pkey')}")
    cursor.execute(f"ALTER SEQUENCE {_quote(sequence)} RENAME TO {_quote(table + '_id_seq')}")
    cursor.execute(f"ALTER SEQUENCE {_quote(table + '_id_seq')} OWNED BY {_quote(table)}.id")
    cursor.execute(
        f"ALTER TABLE {_quote(table)} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')"
    )
    _recreate(cursor, table, indexes, foreign_keys)


def unpartition_table(cursor) -> None:
    """The way back: one plain table with the same rows (the migration's reverse)."""
    table, work = TABLE, f"{TABLE}_plain"
    indexes, foreign_keys = _indexes_and_foreign_keys(cursor, table)
    cursor.execute(
        f"CREATE TABLE {_quote(work)} (LIKE {_quote(table)} INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS)"
    )
    cursor.execute(f"INSERT INTO {_quote(work)} SELECT * FROM {_quote(table)}")  # noqa: S608
    cursor.execute(f"ALTER SEQUENCE {_quote(table + '_id_seq')} OWNED BY {_quote(work)}.id")
    cursor.execute(f"DROP TABLE {_quote(table)}")
    cursor.execute(f"ALTER TABLE {_quote(work)} RENAME TO {_quote(table)}")
    cursor.execute(f"ALTER TABLE {_quote(table)} ADD PRIMARY KEY (id)")
    _recreate(cursor, table, indexes, foreign_keys)
