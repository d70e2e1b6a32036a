"""bench/fleet.py at toy scale, so the fleet benchmark keeps running (its figures come from
the full-size run in bench/README.md): both databases made, loaded, timed and dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql://postgres@127.0.0.1:5432/test"

pytestmark = pytest.mark.integration


def test_the_fleet_benchmark_runs_plain_and_partitioned_and_prints_its_table():
    try:
        psycopg.connect(SERVER, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    done = subprocess.run(
        [sys.executable, "bench/fleet.py", "--sites", "20", "--raw-days", "1",
         "--daily-days", "3", "--step", "3600", "--repeat", "1", "--requests", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Fleet: 20 sites, 480 raw samples (1 days every 3600 s), 460 hourly rows" in out, out
    for row in (
        "tick insert",
        "rollup of one day",
        "hourly rollup of an hour",
        "hourly rollup backfill",
        "usage API p95",
        "retention",
        "samples indexes",
    ):
        assert f"| {row}" in out, out
    with psycopg.connect(SERVER) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bench_fleet_%'"
        ).fetchall()
    assert left == []  # dropped at the end
