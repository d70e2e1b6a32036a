#!/usr/bin/env python
"""Daily rollup benchmark: `monitoring.rollups.rollup_day` over 30 days x 200 sites, against
one hand-written SQL statement doing the same aggregation, on SQLite and on PostgreSQL.

    .venv/bin/python bench/rollup.py                      # both databases
    .venv/bin/python bench/rollup.py --backend sqlite     # or postgres
    .venv/bin/python bench/rollup.py --step 30            # the real 30 s rate (17.3M rows)

Data: one usage sample per site every `--step` seconds (default 300 s, i.e. 288 a day and
1.73M samples for 30 days x 200 sites — the production 30 s rate would be 17.3M rows, too
many to load in reasonable time on a 2-core machine) and one health check per site every
15 minutes (576k rows), written in time order as the collector writes them, then ANALYZEd.

Timed, in the same process on the same data, median of `--repeat` runs:
- rollup, fresh: `rollup_day(d)` for each of the 30 days into an empty DailyUsage table
  (30 statements, each INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE);
- rollup, re-run: the same over existing rows (every row goes through ON CONFLICT UPDATE),
  which is what the hourly refresh of today's row does;
- reference: ONE hand-written INSERT … SELECT grouping the 30 days by (site, date) into an
  empty scratch table — samples and health checks aggregated separately, then joined.
The two results are compared row by row before the figures are printed.

SQLite runs on its own file database under /tmp; PostgreSQL in a database `bench_rollup`
created on the server of --postgres-url (default postgres://postgres@127.0.0.1:5432/test)
and dropped afterwards. Only loopback servers are accepted.
"""

# ruff: noqa: S608  (every SQL identifier here comes from model metadata, values are params)
from __future__ import annotations

import argparse
import ipaddress
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "bench_rollup"
START = date(2025, 1, 1)
HEALTH_STEP = 900


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--step", type=int, default=300, help="seconds between samples")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--child", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- parent: one child process per database ---------------------------------------------


def _loopback_only(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing a non-loopback database server: {host!r}")


def run_child(backend: str, args: argparse.Namespace, env: dict[str, str]) -> int:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        backend,
        *("--days", str(args.days), "--sites", str(args.sites)),
        *("--step", str(args.step), "--repeat", str(args.repeat)),
    ]
    return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode


def run_sqlite(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-rollup-", dir="/tmp"))
    try:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "HOSTPANEL_VAR_DIR": str(workdir / "var"),
        }
        return run_child("sqlite", args, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_postgres(args: argparse.Namespace) -> int:
    import psycopg

    _loopback_only(args.postgres_url)
    admin_url = args.postgres_url.replace("postgres://", "postgresql://", 1)
    parts = urlsplit(args.postgres_url)
    bench_url = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-rollup-", dir="/tmp"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {BENCH_DB}")
    try:
        env = {
            **os.environ,
            "DATABASE_URL": bench_url,
            "HOSTPANEL_VAR_DIR": str(workdir / "var"),
        }
        return run_child("postgres", args, env)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        shutil.rmtree(workdir, ignore_errors=True)


# --- child: load, time, compare ------------------------------------------------------------


def setup_django(step: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "hostpanel.settings"
    os.environ["USAGE_INTERVAL_SECONDS"] = str(step)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def quoted(model, *names: str) -> list[str]:
    from django.db import connection

    return [connection.ops.quote_name(model._meta.get_field(n).column) for n in names]


def make_sites(n: int):
    from accounts.models import Organization
    from hosting.models import DockerHost, Site

    orgs = Organization.objects.bulk_create(
        Organization(name=f"Bench {i}", slug=f"bench-{i}") for i in range(max(1, n // 10))
    )
    host = DockerHost.objects.create(name="bench", endpoint="unix:///nonexistent.sock")
    return Site.objects.bulk_create(
        Site(
            organization=orgs[i % len(orgs)],
            name=f"Site {i}",
            slug=f"site-{i}",
            host=host,
            desired_state="running",
            observed_state="running",
        )
        for i in range(n)
    )


def load(model, columns: list[str], rows, chunk: int = 50_000) -> int:
    """Bulk-load rows (values already adapted for the database) in chunks."""
    from django.db import connection, transaction

    cols = quoted(model, *columns)
    table = connection.ops.quote_name(model._meta.db_table)
    count = 0
    batch: list[tuple] = []

    def flush():
        nonlocal count
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor
            if connection.vendor == "postgresql":
                with raw.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
            else:
                marks = ", ".join("%s" for _ in cols)
                raw.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", batch)
        count += len(batch)
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return count


def generate(sites, days: int, step: int):
    """Samples and health checks, in time order, adapted for the database."""
    from django.db import connection

    from monitoring.models import UsageSample

    rng = random.Random(42)
    adapt_ts = connection.ops.adapt_datetimefield_value
    uuid_field = UsageSample._meta.get_field("site")
    ids = [
        (
            uuid_field.get_db_prep_value(site.organization_id, connection),
            uuid_field.get_db_prep_value(site.pk, connection),
            rng.randint(32, 512) * 2**20,
        )
        for site in sites
    ]
    start = datetime.combine(START, datetime.min.time(), tzinfo=UTC)

    def samples():
        for tick in range(days * 86400 // step):
            ts = adapt_ts(start + timedelta(seconds=tick * step))
            for org_id, site_id, base in ids:
                cpu = None if tick == 0 else round(rng.random() * 50, 2)
                memory = base + rng.randint(0, 64 * 2**20)
                yield (
                    org_id,
                    site_id,
                    "bench",
                    ts,
                    cpu,
                    memory,
                    1 << 30,
                    5,
                    0,
                    0,
                    0,
                    0,
                    0,
                    rng.randint(0, 2**20),
                )

    def checks():
        for tick in range(days * 86400 // HEALTH_STEP):
            ts = adapt_ts(start + timedelta(seconds=tick * HEALTH_STEP))
            for org_id, site_id, _ in ids:
                ok = rng.random() > 0.05
                yield (org_id, site_id, ts, ok, 200 if ok else 503, rng.random() * 200, "")

    return samples(), checks()


SAMPLE_COLUMNS = [
    "organization", "site", "docker_id", "timestamp", "cpu_percent", "memory_bytes",
    "memory_limit_bytes", "pids", "cpu_usage_ns", "net_rx_bytes", "net_tx_bytes",
    "block_read_bytes", "block_write_bytes", "bandwidth_bytes",
]  # fmt: skip
CHECK_COLUMNS = [
    "organization", "site", "timestamp", "ok", "status_code", "response_time_ms", "error",
]  # fmt: skip
DAILY_COLUMNS = [
    "organization", "site", "date", "avg_memory_mb", "max_memory_mb", "avg_cpu_percent",
    "max_cpu_percent", "total_bandwidth_mb", "total_requests", "avg_response_time_ms",
    "uptime_seconds", "samples", "computed_at",
]  # fmt: skip


def reference_sql(table: str) -> str:
    """The hand-written statement: every day at once, into a scratch table."""
    from django.conf import settings
    from django.db import connection

    from monitoring.models import DailyUsage, HealthCheck, UsageSample

    q = connection.ops.quote_name
    usage, checks = q(UsageSample._meta.db_table), q(HealthCheck._meta.db_table)
    if connection.vendor == "postgresql":
        day_of = "CAST({} AT TIME ZONE 'UTC' AS DATE)".format
    else:
        day_of = "DATE({})".format
    interval = int(settings.USAGE_INTERVAL)
    cols = ", ".join(quoted(DailyUsage, *DAILY_COLUMNS))
    return f"""
        INSERT INTO {table} ({cols})
        SELECT s.organization_id, s.site_id, s.day, s.avg_mem, s.max_mem, s.avg_cpu, s.max_cpu,
               s.bandwidth, NULL, r.avg_ms, s.uptime, s.n, %s
        FROM (
            SELECT organization_id, site_id, {day_of("timestamp")} AS day,
                   AVG(CAST(memory_bytes AS DOUBLE PRECISION)) / 1048576.0 AS avg_mem,
                   MAX(memory_bytes) / 1048576.0 AS max_mem,
                   COALESCE(AVG(cpu_percent), 0) AS avg_cpu,
                   COALESCE(MAX(cpu_percent), 0) AS max_cpu,
                   SUM(CAST(bandwidth_bytes AS DOUBLE PRECISION)) / 1048576.0 AS bandwidth,
                   CASE WHEN COUNT(*) * {interval} > 86400 THEN 86400
                        ELSE COUNT(*) * {interval} END AS uptime,
                   COUNT(*) AS n
            FROM {usage}
            WHERE timestamp >= %s AND timestamp < %s
            GROUP BY organization_id, site_id, {day_of("timestamp")}
        ) s
        LEFT JOIN (
            SELECT site_id, {day_of("timestamp")} AS day, AVG(response_time_ms) AS avg_ms
            FROM {checks}
            WHERE ok AND timestamp >= %s AND timestamp < %s
            GROUP BY site_id, {day_of("timestamp")}
        ) r ON r.site_id = s.site_id AND r.day = s.day
    """


def child(args: argparse.Namespace) -> None:
    setup_django(args.step)
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from monitoring.models import DailyUsage, HealthCheck, UsageSample
    from monitoring.rollups import day_bounds, rollup_day

    q = connection.ops.quote_name
    daily = q(DailyUsage._meta.db_table)
    vendor = connection.vendor
    print(f"\n== {vendor} ({connection.settings_dict['NAME']})", flush=True)

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    sites = make_sites(args.sites)
    samples, checks = generate(sites, args.days, args.step)
    n_samples = load(UsageSample, SAMPLE_COLUMNS, samples)
    n_checks = load(HealthCheck, CHECK_COLUMNS, checks)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if vendor == "postgresql" else "ANALYZE")
    make_scratch_tables(daily)
    print(
        f"data: {args.days} days x {args.sites} sites, a sample every {args.step} s "
        f"({n_samples:,} samples), a health check every {HEALTH_STEP} s ({n_checks:,}); "
        f"loaded in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    days = [START + timedelta(days=i) for i in range(args.days)]
    first, _ = day_bounds(days[0])
    _, last = day_bounds(days[-1])
    adapt = connection.ops.adapt_datetimefield_value
    ref_params = [adapt(timezone.now()), *[adapt(b) for b in (first, last)] * 2]

    def empty(table: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"TRUNCATE {table}" if vendor == "postgresql" else f"DELETE FROM {table}"
            )

    def ours() -> int:
        return sum(rollup_day(day) for day in days)

    def reference(table: str):
        sql = reference_sql(table)

        def run() -> int:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, ref_params)
                return cursor.rowcount

        return run

    variants = {
        # name: (function, reset before each run)
        "fresh": (ours, lambda: empty(daily)),
        "rerun": (ours, None),
        "ref_bare": (reference(SCRATCH), lambda: empty(SCRATCH)),
        "ref_full": (reference(SCRATCH_FULL), lambda: empty(SCRATCH_FULL)),
    }
    measure(args, variants, daily, "schema as migrated")
    # What the health-check index would give if it covered the subquery (a proposal, not
    # the migrated schema): PostgreSQL reads it index-only; SQLite gets the same columns.
    with connection.cursor() as cursor:
        checks = q(HealthCheck._meta.db_table)
        if vendor == "postgresql":
            cursor.execute(
                f"CREATE INDEX bench_health_cover ON {checks} (site_id, timestamp) "
                "INCLUDE (ok, response_time_ms)"
            )
            cursor.execute(f"VACUUM ANALYZE {checks}")
        else:
            cursor.execute(
                f"CREATE INDEX bench_health_cover ON {checks} "
                "(site_id, timestamp, ok, response_time_ms)"
            )
            cursor.execute("ANALYZE")
    measure(args, variants, daily, "plus a covering health-check index")


def measure(args: argparse.Namespace, variants: dict, daily: str, title: str) -> None:
    times: dict[str, list[float]] = {name: [] for name in variants}
    rows: dict[str, int] = {}
    # One untimed round to warm caches, then `repeat` rounds, the variants interleaved so a
    # noisy neighbour slows them alike.
    for round_ in range(args.repeat + 1):
        for name, (fn, reset) in variants.items():
            if reset:
                reset()
            t0 = time.perf_counter()
            rows[name] = fn()
            if round_:
                times[name].append(time.perf_counter() - t0)

    expected = args.days * args.sites
    assert set(rows.values()) == {expected}, rows
    for table in (SCRATCH, SCRATCH_FULL):
        mismatches = compare(daily, table)
        assert mismatches == 0, f"{mismatches} rows differ from the reference in {table}"

    med = statistics.median
    print(
        f"-- {title}: {expected:,} rows a run, identical to the reference's; "
        f"median of {args.repeat}"
    )
    labels = {
        "fresh": f"rollup_day x{args.days} into an empty table",
        "rerun": f"rollup_day x{args.days} over existing rows",
        "ref_bare": "reference -> bare scratch table",
        "ref_full": "reference -> copy of DailyUsage",
    }
    for name, label in labels.items():
        t = times[name]
        print(
            f"  {label:<42} {med(t) * 1000:8.1f} ms"
            f"  (min {min(t) * 1000:.1f}, max {max(t) * 1000:.1f})"
        )
    for ref in ("ref_full", "ref_bare"):
        print(
            f"  ratio vs {labels[ref]:<33} fresh {med(times['fresh']) / med(times[ref]):.2f}x"
            f"  re-run {med(times['rerun']) / med(times[ref]):.2f}x  (goal <= 1.20x)",
            flush=True,
        )


SCRATCH = "bench_scratch"
SCRATCH_FULL = "bench_scratch_full"


def make_scratch_tables(daily: str) -> None:
    """`bench_scratch`: the columns only. `bench_scratch_full`: DailyUsage's copy with the
    same indexes, unique and foreign-key constraints, so the target's upkeep is the same."""
    from django.db import connection

    from monitoring.models import DailyUsage

    cols = ", ".join(quoted(DailyUsage, *DAILY_COLUMNS))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {SCRATCH} AS SELECT {cols} FROM {daily} WHERE 1 = 0")
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE TABLE {SCRATCH_FULL} (LIKE {daily} INCLUDING ALL)")
            for field in (
                DailyUsage._meta.get_field("organization"),
                DailyUsage._meta.get_field("site"),
            ):
                remote = field.related_model._meta
                cursor.execute(
                    f"ALTER TABLE {SCRATCH_FULL} ADD FOREIGN KEY ({field.column}) "
                    f"REFERENCES {remote.db_table} ({remote.pk.column}) "
                    "DEFERRABLE INITIALLY DEFERRED"
                )
        else:
            table = DailyUsage._meta.db_table
            cursor.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL"
                " ORDER BY type DESC",
                [table],
            )
            for kind, name, sql in cursor.fetchall():
                sql = sql.replace(f'"{table}"', f'"{SCRATCH_FULL}"', 1)
                if kind == "index":
                    sql = sql.replace(f'"{name}"', f'"{SCRATCH_FULL}_{name}"', 1)
                cursor.execute(sql)


def compare(daily: str, scratch: str) -> int:
    """Rows of DailyUsage that differ from the reference's (floats to 1e-9 relative)."""
    import math

    from django.db import connection

    from monitoring.models import DailyUsage

    cols = quoted(DailyUsage, *DAILY_COLUMNS[:-1])
    select = ", ".join(cols)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {select} FROM {daily}")
        ours = {(str(r[1]), str(r[2])): r for r in cursor.fetchall()}
        cursor.execute(f"SELECT {select} FROM {scratch}")
        ref = {(str(r[1]), str(r[2])): r for r in cursor.fetchall()}
    if ours.keys() != ref.keys():
        return len(ours.keys() ^ ref.keys())

    def same(a, b) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
        return str(a) == str(b)

    return sum(1 for key, row in ours.items() if not all(map(same, row, ref[key])))


def main() -> int:
    args = parse_args()
    if args.child:
        child(args)
        return 0
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    status = 0
    for backend in backends:
        runner = run_sqlite if backend == "sqlite" else run_postgres
        status |= runner(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
