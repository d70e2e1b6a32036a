"""Deleting old rows in short batches (retention): one statement and one transaction per
batch, so no transaction holds the database (SQLite's single writer lock above all) for long
and the workers' inserts slip in between batches."""

from __future__ import annotations

from django.db import connection, models, transaction


def delete_in_batches(model: type[models.Model], field: str, cutoff, batch_size: int) -> int:
    """Delete rows whose `field` is before `cutoff`, `batch_size` at a time; returns the count.

    Each batch is one statement, ``DELETE … WHERE pk IN (SELECT pk … WHERE field < %s LIMIT
    n)``, in its own transaction. The table must have nothing pointing at it, so no cascade
    is needed (checked, so a future reverse relation is not silently orphaned). Audit rows
    leave by audit.chain.purge_before instead, which keeps their hash chain verifiable.
    """
    related = [
        rel
        for rel in model._meta.get_fields()
        if (rel.one_to_many or rel.one_to_one) and rel.auto_created and not rel.concrete
    ]
    if related:
        raise RuntimeError(f"{model.__name__} has dependent rows ({related}); delete with cascades")
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk = quote(model._meta.pk.column)
    model_field = model._meta.get_field(field)
    column = quote(model_field.column)
    value = model_field.get_db_prep_value(cutoff, connection)
    sql = (
        f"DELETE FROM {table} WHERE {pk} IN "  # noqa: S608 (identifiers from _meta)
        f"(SELECT {pk} FROM {table} WHERE {column} < %s LIMIT %s)"
    )
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [value, batch_size])
            count = max(cursor.rowcount, 0)
        deleted += count
        if count < batch_size:
            return deleted
