"""GET /api/v1/organizations/{org}/sites/ (50 sites, token auth, gunicorn -w 2, SQLite)
against a bare DRF ListAPIView serving the same JSON (bench/api_bare_urls.py), interleaved in
one run. Prints requests per second of each and the ratio (goal: >= 1.0).

    .venv/bin/python bench/api.py [--seconds 5] [--rounds 5] [--clients 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="hp-bench-api-"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.api_bare",
        "HOSTPANEL_VAR_DIR": str(WORK),
        "THROTTLE_TOKEN": "10000000/min",
        "PYTHONPATH": str(ROOT),
    }


def setup() -> dict[str, str]:
    """Migrate a fresh SQLite file, make 50 sites, a panel token and a DRF token."""
    script = r"""
import django, json
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from rest_framework.authtoken.models import Token
from accounts import services as accounts
from hosting import services
user = accounts.create_user(email="runner@example.test", password=None)
org = accounts.create_organization(actor=user, name="Bench", slug="bench")
services.update_quota(
    org, actor=None, max_sites=100, max_memory_mb=100000, max_cpu_percent=6400, max_disk_mb=10**9
)
services.create_host(actor=None, name="idle", endpoint="unix:///nonexistent.sock")
for n in range(50):
    services.create_site(org, actor=user, name=f"Site {n}", site_type="docker",
                         image="example/app:1", desired_state="stopped",
                         limits={"memory_mb": 64, "cpu_percent": 10})
_, panel = accounts.create_api_token(actor=user, name="bench", scopes=["read"])
print(json.dumps({"panel": panel, "bare": Token.objects.create(user=user).key}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        sys.exit(f"set-up failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load(port: int, path: str, auth: str, seconds: float, clients: int) -> float:
    """Requests per second from `clients` keep-alive connections for `seconds`."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            conn.request("GET", path, headers={"Authorization": auth})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body[:300])
            done[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    tokens = setup()
    port = free_port()
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "hostpanel.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--threads",
            "2",
            "--log-level",
            "warning",
        ],
        env=env(),
        cwd=ROOT,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        panel_path, bare_path = "/api/v1/organizations/bench/sites/", "/bare/bench/sites/"
        panel_auth, bare_auth = f"Bearer {tokens['panel']}", f"Token {tokens['bare']}"
        a = json.loads(_get(port, panel_path, panel_auth))
        b = json.loads(_get(port, bare_path, bare_auth))
        assert a["count"] == b["count"] == 50 and a["results"] == b["results"], "JSON differs"
        load(port, panel_path, panel_auth, 1, args.clients)  # warm both workers up
        load(port, bare_path, bare_auth, 1, args.clients)
        panel, bare = [], []
        for _ in range(args.rounds):
            panel.append(load(port, panel_path, panel_auth, args.seconds, args.clients))
            bare.append(load(port, bare_path, bare_auth, args.seconds, args.clients))
        p, r = statistics.median(panel), statistics.median(bare)
        print(f"panel sites list: {p:.0f} req/s (rounds {[round(x) for x in panel]})")
        print(f"bare ListAPIView: {r:.0f} req/s (rounds {[round(x) for x in bare]})")
        print(f"ratio panel/bare: {p / r:.2f} (goal >= 1.0)")
    finally:
        web.terminate()
        web.wait(timeout=30)


def _get(port: int, path: str, auth: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": auth})
    body = conn.getresponse().read()
    conn.close()
    return body


if __name__ == "__main__":
    main()
