"""Reading a proxy access log: monitoring.traffic.tally_lines (orjson, per-site tallies)
against Python's json module in a plain loop doing the same counting, on the same file of
Caddy 2.6 JSON access lines. Prints lines per second of each and the ratio.

    .venv/bin/python bench/access_log.py [--lines 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostpanel.settings")
os.environ.setdefault("HOSTPANEL_VAR_DIR", tempfile.mkdtemp(prefix="hp-bench-log-"))

import django  # noqa: E402

django.setup()

from monitoring.traffic import tally_lines  # noqa: E402


def make_log(path: Path, lines: int) -> None:
    """Lines as Caddy writes them (request headers included), 50 sites, mixed statuses."""
    with open(path, "w") as out:
        for n in range(lines):
            entry = {
                "level": "info",
                "ts": 1796290000.0 + n / 100,
                "logger": "http.log.access.hostpanel_access",
                "msg": "handled request",
                "request": {
                    "remote_ip": "127.0.0.1",
                    "remote_port": str(40000 + n % 20000),
                    "proto": "HTTP/1.1",
                    "method": "GET",
                    "host": f"site{n % 50}-acme.sites.localhost:8080",
                    "uri": f"/page/{n % 997}",
                    "headers": {
                        "User-Agent": ["Mozilla/5.0 (X11; Linux x86_64) bench"],
                        "Accept": ["text/html,application/xhtml+xml"],
                        "Accept-Encoding": ["gzip, deflate"],
                    },
                },
                "user_id": "",
                "duration": 0.0005 + (n % 40) / 10000,
                "size": 512 + n % 4096,
                "status": (200, 200, 200, 304, 404, 500)[n % 6],
                "resp_headers": {"Content-Type": ["text/html; charset=utf-8"]},
            }
            out.write(json.dumps(entry) + "\n")


def reference(data: bytes) -> Counter:
    """The same counting with json.loads in a plain loop (the reference)."""
    requests: Counter = Counter()
    for line in data.splitlines():
        entry = json.loads(line)
        name = entry["request"]["host"].rsplit(":", 1)[0].lower()
        requests[name] += 1
        int(entry["status"]) // 100, int(entry.get("size") or 0), float(entry["duration"])
    return requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="hp-bench-log-")) / "access.log"
    make_log(path, args.lines)
    data = path.read_bytes()
    print(f"{args.lines} lines, {len(data) / 2**20:.0f} MB")
    ours, ref = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        tallies = tally_lines(data)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        counted = reference(data)
        ref.append(time.perf_counter() - started)
        assert {k: t.requests for k, t in tallies.items()} == dict(counted), "counts differ"
    o, r = statistics.median(ours), statistics.median(ref)
    print(f"ours (tally_lines, orjson): {o:.2f} s, {args.lines / o:,.0f} lines/s")
    print(f"json module, plain loop:    {r:.2f} s, {args.lines / r:,.0f} lines/s")
    print(f"ratio ours/reference (time): {o / r:.2f}")
    path.unlink()


if __name__ == "__main__":
    main()
