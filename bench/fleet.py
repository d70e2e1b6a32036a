#!/usr/bin/env python
"""Fleet benchmark: PostgreSQL holding usage for thousands of sites, with and without the
monthly partitioning of usage samples (monitoring/partitions.py), in the same run.

    .venv/bin/python bench/fleet.py                          # 5,000 sites, 2 days raw
    .venv/bin/python bench/fleet.py --sites 500 --raw-days 1 # a quick look

Data, generated in the database (no engines): `--sites` sites in one organization, raw
samples every `--step` seconds for the last `--raw-days` days ending at the start of this
month (so the oldest day is in last month: what retention removes), and `--daily-days` of
DailyUsage rows per site. The goal scale is 30 raw days (432 M rows at 5,000 sites, about
60 GB a database): too big for this 2-core machine, so the default loads 2 days; the
figures that grow with the raw days (sizes, retention) scale linearly, the others do not.

Timed in each database (median of --repeat unless said):
- tick: one collection tick, `bulk_create` of one sample per site in one transaction
  (what monitoring.collectors writes every 30 s); goal <= 1 s;
- rollup: `monitoring.rollups.rollup_day` for the last loaded day; goal <= 60 s;
- hourly rollup: `monitoring.hourly.rollup_hour` for the last hour before the mark (the
  periodic run does one or two new hours and two again every 5 minutes); the loaded hours
  are rolled before, timed as a whole ("backfill"), as a first run after the upgrade would;
- usage API: GET .../sites/<site>/usage/?resolution=hour over 30 days for random sites,
  through the whole Django stack (session, middleware, serializer): p50 and p95 of
  --requests; goal p95 <= 100 ms. The hourly rollups go up to the last loaded hour, which is
  read from the samples, as the open hour is in production;
- retention: raw samples older than the start of this month go — plain: the batched
  DELETE (monitoring.retention's way), partitioned: monitoring.partitions.drop_before then
  the same DELETE for what is left (nothing); the hourly rows of those days are deleted in
  batches in both; timed once;
- sizes: table and index bytes of the usage samples (all partitions summed).

Each variant gets its own database `bench_fleet_<variant>` on the server of --postgres-url
(loopback only), dropped at the end.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("plain", "partitioned")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=5000)
    parser.add_argument("--raw-days", type=int, default=2)
    parser.add_argument("--daily-days", type=int, default=365)
    parser.add_argument("--step", type=int, default=30, help="seconds between samples")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="plain,partitioned or one of them"
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- parent -------------------------------------------------------------------------------------


def loopback_only(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing a non-loopback database server: {host!r}")


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    import psycopg

    admin_url = args.postgres_url.replace("postgres://", "postgresql://", 1)
    name = f"bench_fleet_{variant}"
    url = urlunsplit(urlsplit(args.postgres_url)._replace(path=f"/{name}"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-", dir="/tmp"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        env = {**os.environ, "DATABASE_URL": url, "HOSTPANEL_VAR_DIR": str(workdir / "var")}
        command = [sys.executable, str(Path(__file__).resolve()), "--child", variant]
        for option in ("sites", "raw_days", "daily_days", "step", "repeat", "requests"):
            command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
        done = subprocess.run(command, env=env, cwd=ROOT, check=False, capture_output=True)
        sys.stderr.write(done.stderr.decode())
        if done.returncode:
            raise SystemExit(f"{variant}: the child failed ({done.returncode})")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(workdir, ignore_errors=True)


def report(results: dict[str, dict], args: argparse.Namespace) -> None:
    first = next(iter(results.values()))
    print(
        f"\nFleet: {args.sites} sites, {first['raw_rows']:,} raw samples "
        f"({args.raw_days} days every {args.step} s), {first['hourly_rows']:,} hourly rows, "
        f"{first['daily_rows']:,} daily rows ({args.daily_days} days)\n"
    )
    rows = [
        ("tick insert (median)", "tick_s", "s", "<= 1 s"),
        ("rollup of one day", "rollup_s", "s", "<= 60 s"),
        ("hourly rollup of an hour", "hourly_rollup_s", "s", "<= 300 s"),
        ("hourly rollup backfill", "backfill_s", "s", ""),
        ("usage API p50", "api_p50_ms", "ms", ""),
        ("usage API p95", "api_p95_ms", "ms", "<= 100 ms"),
        ("retention (oldest day)", "retention_s", "s", ""),
        ("samples table", "table_mb", "MB", ""),
        ("samples indexes", "index_mb", "MB", ""),
    ]
    both = len(results) == 2
    names = list(results)
    print(f"| {'measure':<24} | " + " | ".join(f"{n:>11}" for n in names)
          + (" |  ratio" if both else "") + " | goal |")  # fmt: skip
    print(f"|{'-' * 26}|" + "|".join(f"{'-' * 12}:" for _ in names)
          + ("|-------:" if both else "") + "|------|")  # fmt: skip
    for label, key, unit, goal in rows:
        values = [results[n][key] for n in names]
        cells = " | ".join(f"{v:>8.3f} {unit:<2}" for v in values)
        ratio = ""
        if both:
            ratio = f" | {values[1] / values[0]:>6.2f}" if values[0] else " |      -"
        print(f"| {label:<24} | {cells}{ratio} | {goal} |")


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    loopback_only(args.postgres_url)
    wanted = [v for v in args.variants.split(",") if v]
    if not set(wanted) <= set(VARIANTS) or not wanted:
        raise SystemExit(f"--variants: some of {', '.join(VARIANTS)}")
    results = {variant: run_variant(variant, args) for variant in wanted}
    report(results, args)


# --- child: one database --------------------------------------------------------------------


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "hostpanel.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["ALLOWED_HOSTS"] = "testserver"  # the usage API is asked through Django's Client
    import django

    django.setup()


def migrate(variant: str) -> None:
    from django.core.management import call_command
    from django.db import connection

    from monitoring import partitions

    call_command("migrate", verbosity=0)
    if variant == "plain":  # the table as before 0006, with every later index
        with connection.cursor() as cursor:
            partitions.unpartition_table(cursor)


def make_fleet(sites: int):
    from accounts.services import create_user
    from hosting.models import DockerHost, ResourceLimit, Site

    owner = create_user(email="fleet@example.test", password="fleet pass 1 two three")
    org = owner.memberships.get().organization
    host = DockerHost.objects.create(name="fleet", endpoint="unix:///nonexistent.sock")
    rows = [
        Site(organization=org, name=f"Site {n}", slug=f"s{n}", host=host, image="x")
        for n in range(sites)
    ]
    Site.objects.bulk_create(rows, batch_size=1000)
    ResourceLimit.objects.bulk_create(
        [ResourceLimit(organization=org, site=s) for s in rows], batch_size=1000
    )
    return owner, org, rows


def load(cursor, org, start: datetime, raw_days: int, daily_days: int, step: int) -> None:
    """Raw samples day by day, in time order as the collector writes them; daily rows."""
    for day in range(raw_days):
        low = start + timedelta(days=day)
        cursor.execute(
            "INSERT INTO monitoring_usagesample (organization_id, site_id, docker_id, "
            '"timestamp", cpu_percent, memory_bytes, memory_limit_bytes, pids, cpu_usage_ns, '
            "net_rx_bytes, net_tx_bytes, block_read_bytes, block_write_bytes, "
            "bandwidth_bytes, disk_bytes) "
            "SELECT s.organization_id, s.id, 'c' || s.slug, t, random() * 50, "
            "(random() * 2e8)::bigint, 536870912, 12, 0, 0, 0, 0, 0, "
            "(random() * 1e5)::bigint, NULL "
            "FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 second', "
            "%s * interval '1 second') t CROSS JOIN hosting_site s ORDER BY t",
            [low, low + timedelta(days=1), step],
        )
    cursor.execute(
        "INSERT INTO monitoring_dailyusage (organization_id, site_id, date, avg_memory_mb, "
        "max_memory_mb, avg_cpu_percent, max_cpu_percent, total_bandwidth_mb, "
        "total_requests, uptime_seconds, samples, computed_at) "
        "SELECT s.organization_id, s.id, d::date, 100, 200, 10, 50, 5, 1000, 86400, 2880, "
        "now() FROM generate_series(%s::date - %s, %s::date - 1, interval '1 day') d "
        "CROSS JOIN hosting_site s",
        [start.date(), daily_days, start.date()],
    )
    # What autovacuum does after a load: statistics, and the visibility map that lets the
    # covering index answer without the heap.
    cursor.execute("VACUUM (ANALYZE) monitoring_usagesample")
    cursor.execute("ANALYZE")


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def child(args: argparse.Namespace) -> None:
    setup_django()
    from django.db import connection, transaction
    from django.test import Client

    from hostpanel.batch import delete_in_batches
    from monitoring import hourly, partitions, rollups
    from monitoring.models import DailyUsage, HourlyUsage, UsageSample

    variant = args.child
    migrate(variant)
    owner, org, sites = make_fleet(args.sites)
    month = datetime.now(tz=UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = month - timedelta(days=1)  # the oldest loaded day is last month's last day
    if variant == "partitioned":
        partitions.ensure(now=start, ahead=2)  # last month's partition, before the load
    with connection.cursor() as cursor:
        load(cursor, org, start, args.raw_days, args.daily_days, args.step)
    raw_rows = UsageSample.objects.count()

    def tick(at: datetime) -> None:
        with transaction.atomic():
            UsageSample.objects.bulk_create(
                [
                    UsageSample(
                        organization=org,
                        site=s,
                        docker_id=f"c{s.slug}",
                        timestamp=at,
                        memory_bytes=1,
                        cpu_percent=1.0,
                    )
                    for s in sites
                ]
            )

    last = start + timedelta(days=args.raw_days)
    ticks = [timed(lambda n=n: tick(last + timedelta(seconds=n))) for n in range(args.repeat)]
    rollup_s = timed(lambda: rollups.rollup_day((last - timedelta(days=1)).date()))

    def backfill() -> None:
        hour = start
        while hour < last - hourly.HOUR:
            hourly.rollup_hour(hour)
            hour += hourly.HOUR

    backfill_s = timed(backfill)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE monitoring_hourlyusage")
    hourly_s = statistics.median(
        timed(lambda: hourly.rollup_hour(last - 2 * hourly.HOUR)) for _ in range(args.repeat)
    )
    assert hourly.rolled_through() == last - hourly.HOUR

    browser = Client()
    browser.force_login(owner)
    random.seed(7)
    span = urlencode({"from": (last - timedelta(days=30)).isoformat(), "to": last.isoformat()})
    latencies = []
    for _ in range(args.requests):
        site = random.choice(sites)
        began = time.perf_counter()
        answer = browser.get(
            f"/api/v1/organizations/{org.slug}/sites/{site.slug}/usage/?resolution=hour&{span}"
        )
        latencies.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, answer.content[:300]
    latencies.sort()

    def sizes() -> tuple[float, float]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(pg_table_size(c.oid)), 0), "
                "coalesce(sum(pg_indexes_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relname LIKE 'monitoring_usagesample%%' AND c.relkind = 'r'"
            )
            table, index = cursor.fetchone()
        return float(table) / 2**20, float(index) / 2**20

    table_mb, index_mb = sizes()
    hourly_rows = HourlyUsage.objects.count()

    def retention() -> None:
        partitions.drop_before(month)
        delete_in_batches(UsageSample, "timestamp", month, 5000)
        delete_in_batches(HourlyUsage, "hour", month, 5000)

    retention_s = timed(retention)
    assert not UsageSample.objects.filter(timestamp__lt=month).exists()
    print(
        json.dumps(
            {
                "raw_rows": raw_rows,
                "daily_rows": DailyUsage.objects.count(),
                "hourly_rows": hourly_rows,
                "tick_s": statistics.median(ticks),
                "rollup_s": rollup_s,
                "hourly_rollup_s": hourly_s,
                "backfill_s": backfill_s,
                "api_p50_ms": latencies[len(latencies) // 2],
                "api_p95_ms": latencies[int(len(latencies) * 0.95) - 1],
                "retention_s": retention_s,
                "table_mb": table_mb,
                "index_mb": index_mb,
            }
        )
    )


if __name__ == "__main__":
    main()
