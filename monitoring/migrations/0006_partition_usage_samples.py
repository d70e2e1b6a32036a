"""Usage samples partitioned by month on PostgreSQL (monitoring/partitions.py); SQLite keeps
its plain table. The model does not change: Django still addresses rows by id."""

from django.db import migrations
from django.utils import timezone


def partition(apps, schema_editor):
    from monitoring import partitions

    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if not partitions.is_partitioned(cursor):
            partitions.partition_table(cursor, timezone.now())


def unpartition(apps, schema_editor):
    from monitoring import partitions

    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if partitions.is_partitioned(cursor):
            partitions.unpartition_table(cursor)


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0005_traffic_status_429")]

    operations = [migrations.RunPython(partition, unpartition, elidable=False)]
