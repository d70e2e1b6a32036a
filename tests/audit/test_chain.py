"""The tamper-evident audit trail: rows sealed into a hash chain after their commit; a
changed, removed or reordered row is named by audit_verify; the database refuses UPDATE and
DELETE (SQLite and PostgreSQL triggers) except the retention purge, which keeps the rest of
the chain verifiable; exports verify on their own."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import User
from audit import chain
from audit.models import AuditLog
from audit.services import record
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def write(n: int, **changes) -> list[AuditLog]:
    rows = []
    for i in range(n):
        with transaction.atomic():
            rows.append(record("user.update", target_label=f"row {i}", changes={"n": i, **changes}))
    chain.seal()
    return [AuditLog.objects.get(pk=row.pk) for row in rows]  # with their chain values


@contextlib.contextmanager
def triggers_off():
    """What an attacker with the database's owner rights could do: the guard is off, only the
    chain is left to tell."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER audit_auditlog_no_update")
            cursor.execute("DROP TRIGGER audit_auditlog_no_delete")
        else:
            cursor.execute("ALTER TABLE audit_auditlog DISABLE TRIGGER audit_auditlog_append_only")
        yield cursor  # PostgreSQL: the test's rollback restores it; SQLite: the fixture


@pytest.fixture(autouse=True)
def _restore_sqlite_triggers():
    yield
    if connection.vendor == "sqlite":
        import importlib

        migration = importlib.import_module("audit.migrations.0002_hash_chain")
        with connection.cursor() as cursor:
            for statement in migration.SQLITE_DROP + migration.SQLITE_TRIGGERS:
                cursor.execute(statement)


def test_committed_rows_are_sealed_in_order_and_verify(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        record("user.update", target_label="a")
        record("user.update", target_label="b")
    rows = list(AuditLog.objects.order_by("sequence"))
    assert [r.sequence for r in rows] == [1, 2] and [r.target_label for r in rows] == ["a", "b"]
    assert rows[0].prev_hash == chain.GENESIS and rows[1].prev_hash == rows[0].row_hmac
    assert chain.verify().ok and chain.verify().checked == 2


def test_the_database_refuses_to_change_or_delete_a_sealed_row():
    [row] = write(1)
    for sql in (
        "UPDATE audit_auditlog SET changes = '{}' WHERE id = %s",
        "DELETE FROM audit_auditlog WHERE id = %s",
    ):
        with (
            pytest.raises(IntegrityError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [db_id(row)])
    assert chain.verify().ok


def db_id(row):
    return row.pk.hex if connection.vendor == "sqlite" else row.pk


def test_a_changed_row_is_named(capsys):
    rows = write(4)
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE audit_auditlog SET changes = %s WHERE id = %s",
            [json.dumps({"n": 99}), db_id(rows[2])],
        )
    verdict = chain.verify()
    assert not verdict.ok and verdict.problem == f"row 3 (id {rows[2].pk}) was changed"
    with pytest.raises(SystemExit) as exited:
        call_command("audit_verify")
    assert exited.value.code == 1 and "row 3" in capsys.readouterr().err


def test_a_removed_row_is_named():
    rows = write(4)
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audit_auditlog WHERE id = %s", [db_id(rows[1])])
    verdict = chain.verify()
    assert not verdict.ok and "chain broken at sequence 2: row(s) removed" in verdict.problem


def test_two_swapped_rows_are_named():
    rows = write(4)
    with triggers_off() as cursor:
        for row, sequence in ((rows[1], -1), (rows[2], 2), (rows[1], 3)):
            cursor.execute(
                "UPDATE audit_auditlog SET sequence = %s WHERE id = %s", [sequence, db_id(row)]
            )
    verdict = chain.verify()
    assert not verdict.ok and "row 2" in verdict.problem


def test_rows_verify_only_with_the_key_that_sealed_them(settings):
    write(3)
    settings.AUDIT_CHAIN_KEY = "another key"
    assert not chain.verify().ok  # rows sealed with one key do not verify with another


def test_retention_keeps_the_rest_of_the_chain_verifiable():
    old = write(3)
    kept = write(2)
    cutoff = kept[0].timestamp
    assert chain.purge_before(cutoff) == 3
    assert list(AuditLog.objects.order_by("sequence").values_list("sequence", flat=True)) == [4, 5]
    head = chain.head()
    assert (
        head.start_sequence == 4 and head.start_prev_hash == old[-1].row_hmac == kept[0].prev_hash
    )
    assert not head.purging
    assert chain.verify().ok
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditlog")  # the gate is closed again


def test_an_export_verifies_on_its_own_and_a_tampered_one_does_not(tmp_path, capsys):
    write(3, note="ünïcode ✓")
    out = tmp_path / "audit.jsonl"
    call_command("audit_export", str(out))
    capsys.readouterr()
    call_command("audit_verify", "--file", str(out))
    assert "ok: 3 rows verified" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    lines[2] = lines[2].replace('"n": 1', '"n": 7')
    out.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit):
        call_command("audit_verify", "--file", str(out))
    assert "row 2" in capsys.readouterr().err


def test_the_head_is_written_out(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    write(2)
    line = chain.write_head()
    assert line.startswith("audit chain head: sequence 2 hmac ")
    assert line in (tmp_path / "audit-chain-head.log").read_text()


def test_deleting_a_user_leaves_their_audit_rows_as_they_were():
    user = make_user("gone@example.test")
    with transaction.atomic():
        record("user.update", actor=user, target=user)
    chain.seal()
    row = AuditLog.objects.filter(actor_label="gone@example.test").get()
    User.objects.filter(pk=user.pk).delete()
    row.refresh_from_db()
    assert row.actor_id == user.pk and row.actor_label == "gone@example.test"
    assert chain.verify().ok


def test_a_lost_seal_is_done_by_the_next_one():
    with transaction.atomic():
        record("user.update", target_label="not sealed yet")
    assert AuditLog.objects.get().sequence is None  # its commit's seal never ran here
    assert chain.seal() == 1 and chain.verify().ok
    assert chain.seal() == 0
    assert AuditLog.objects.filter(timestamp__lt=timezone.now() + timedelta(1)).count() == 1
