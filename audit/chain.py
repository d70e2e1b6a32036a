"""The audit trail as a hash chain (tamper-evident): every row, once sealed, carries its place
in the chain (`sequence`), the previous row's HMAC (`prev_hash`) and an HMAC over its own
canonical content and those two (`row_hmac`), keyed with AUDIT_CHAIN_KEY, which lives outside
the database. Changing, removing or reordering a sealed row breaks the chain at that row;
rewriting the whole table needs the key, and the chain head written out daily shows it.

Rows are sealed after their transaction commits (`seal`, in commit order, one short
transaction holding the chain's head row), never inside the change's transaction: a service
that records several entries and locks rows in between cannot deadlock on the head. A row
whose seal was lost (a crash right after its commit) is sealed by the next seal or by the
periodic `seal_audit_chain` task.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditChain, AuditLog

log = logging.getLogger("hostpanel.audit.chain")
GENESIS = "0" * 64
CONTENT_FIELDS = (
    "id",
    "timestamp",
    "organization_id",
    "actor_id",
    "actor_label",
    "token_id",
    "ip",
    "user_agent",
    "request_id",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "changes",
)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    if hasattr(value, "astimezone"):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return str(value)


def content_of(row: AuditLog | dict[str, Any]) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return {name: _plain(get(name)) for name in CONTENT_FIELDS}


def row_hmac(content: dict[str, Any], sequence: int, prev_hash: str) -> str:
    canonical = json.dumps(
        {**content, "sequence": sequence, "prev_hash": prev_hash},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return hmac.new(settings.AUDIT_CHAIN_KEY.encode(), canonical, hashlib.sha256).hexdigest()


def head() -> AuditChain:
    chain, _ = AuditChain.objects.get_or_create(pk=1)
    return chain


def seal() -> int:
    """Seal every committed, unsealed row, oldest first. Returns how many were sealed."""
    with transaction.atomic():
        head()
        # Taking the head's lock first: SQLite's write lock, or PostgreSQL's row lock.
        AuditChain.objects.filter(pk=1).update(updated_at=timezone.now())
        chain = AuditChain.objects.get(pk=1)
        pending = list(
            AuditLog.objects.filter(sequence__isnull=True).order_by("timestamp", "id")[:5000]
        )
        sequence, last = chain.sequence, chain.last_hmac or GENESIS
        for row in pending:
            sequence += 1
            digest = row_hmac(content_of(row), sequence, last)
            AuditLog.objects.filter(pk=row.pk, sequence__isnull=True)._seal(
                sequence=sequence, prev_hash=last, row_hmac=digest
            )
            last = digest
        AuditChain.objects.filter(pk=1).update(
            sequence=sequence, last_hmac=last, updated_at=timezone.now()
        )
    if len(pending) == 5000:
        return len(pending) + seal()
    return len(pending)


def _seal_on_commit() -> None:
    try:
        seal()
    except Exception:  # the periodic task seals what this left
        log.exception("audit: sealing after commit failed; the periodic task will seal")


def seal_after_commit() -> None:
    """Called by audit.record: seal once the change's transaction commits (one seal per
    transaction, however many entries it recorded; none if it rolls back)."""
    conn = transaction.get_connection()
    if any(entry[1] is _seal_on_commit for entry in conn.run_on_commit):
        return
    transaction.on_commit(_seal_on_commit)


# --- verification -----------------------------------------------------------------------------


@dataclass
class Verdict:
    ok: bool
    checked: int
    problem: str = ""

    def __str__(self) -> str:
        return f"ok: {self.checked} rows verified" if self.ok else self.problem


def verify_rows(
    rows: Iterable[dict[str, Any]], start_sequence: int = 1, start_prev: str = GENESIS
) -> Verdict:
    """Walk sealed rows in sequence order: each must follow the one before (no gap: nothing
    removed; its prev_hash the previous HMAC: nothing reordered) and its HMAC must match its
    content (nothing changed). Names the first row that fails."""
    expected_sequence, previous, checked = start_sequence, start_prev, 0
    for row in rows:
        sequence = row["sequence"]
        if sequence != expected_sequence:
            what = "removed" if sequence > expected_sequence else "repeated or reordered"
            return Verdict(
                False,
                checked,
                f"chain broken at sequence {expected_sequence}: row(s) {what} "
                f"(found {sequence}, id {row['id']})",
            )
        if row["prev_hash"] != previous:
            return Verdict(
                False,
                checked,
                f"row {sequence} (id {row['id']}) does not follow row {sequence - 1}: "
                "removed, reordered or rewritten",
            )
        if not hmac.compare_digest(
            row_hmac(content_of(row), sequence, row["prev_hash"]), row["row_hmac"]
        ):
            return Verdict(False, checked, f"row {sequence} (id {row['id']}) was changed")
        previous, expected_sequence, checked = row["row_hmac"], sequence + 1, checked + 1
    return Verdict(True, checked)


def sealed_rows() -> Iterator[dict[str, Any]]:
    fields = [*CONTENT_FIELDS, "sequence", "prev_hash", "row_hmac"]
    query = AuditLog.objects.filter(sequence__isnull=False).order_by("sequence").values(*fields)
    yield from query.iterator(chunk_size=2000)


def verify() -> Verdict:
    chain = head()
    return verify_rows(sealed_rows(), chain.start_sequence, chain.start_prev_hash or GENESIS)


# --- retention ----------------------------------------------------------------------------------


def purge_before(cutoff, batch_size: int = 1000) -> int:
    """Retention: remove the oldest part of the chain, up to the first sealed row from
    `cutoff` on, in short batches, and record where the kept chain starts (so it still
    verifies). The one way rows leave: the database refuses every other DELETE."""
    seal()
    keep_from = (
        AuditLog.objects.filter(sequence__isnull=False, timestamp__gte=cutoff)
        .order_by("sequence")
        .values_list("sequence", "prev_hash")
        .first()
    )
    chain = head()
    if keep_from is None:
        keep_from = (chain.sequence + 1, chain.last_hmac or GENESIS)
    first_kept, prev_of_first = keep_from
    table = connection.ops.quote_name(AuditLog._meta.db_table)
    deleted = 0
    while True:
        with transaction.atomic():
            AuditChain.objects.filter(pk=1).update(purging=True)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "  # noqa: S608
                    "WHERE sequence < %s ORDER BY sequence LIMIT %s)",
                    [first_kept, batch_size],
                )
                count = max(cursor.rowcount, 0)
            AuditChain.objects.filter(pk=1).update(
                purging=False, start_sequence=first_kept, start_prev_hash=prev_of_first
            )
        deleted += count
        if count < batch_size:
            return deleted


def write_head() -> str:
    """The chain head as one line, logged and appended to VAR_DIR/audit-chain-head.log (run
    daily: a copy of the head kept apart makes a rewrite of the whole table evident)."""
    seal()
    chain = head()
    line = (
        f"audit chain head: sequence {chain.sequence} hmac {chain.last_hmac or GENESIS} "
        f"(kept from {chain.start_sequence})"
    )
    log.info(line)
    with open(settings.VAR_DIR / "audit-chain-head.log", "a") as out:
        out.write(f"{chain.updated_at.isoformat()} {line}\n")
    return line
