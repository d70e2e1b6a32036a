"""bin/run as a new user meets it: web, worker and Caddy start, the local engine becomes the
first host, a site answers through the proxy, Ctrl-C stops everything."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import docker_engines

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent


def get(port: int, host: str, path: str = "/"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_bin_run_starts_the_proxy_registers_the_engine_and_stops_cleanly(tmp_path):
    endpoint = docker_engines.endpoints()[0]
    web_port, proxy_port = docker_engines.free_port(), docker_engines.free_port()
    env = {
        **os.environ,
        "HOSTPANEL_VAR_DIR": str(tmp_path / "var"),
        "PORT": str(web_port),
        "PROXY_HTTP_PORT": str(proxy_port),
        "DOCKER_HOST": endpoint,
        "HOSTPANEL_ADMIN_PASSWORD": "a long enough password 1",
    }
    env.pop("DATABASE_URL", None)
    out_path = tmp_path / "run.log"
    with open(out_path, "w") as out:
        run = subprocess.Popen(
            [str(ROOT / "bin" / "run")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # As from a terminal: a suite started in the background inherits SIGINT ignored,
            # and bash cannot trap a signal ignored on entry.
            preexec_fn=_default_sigint,
        )
    try:
        deadline = time.monotonic() + 120
        while "hostpanel is running" not in out_path.read_text():
            assert run.poll() is None, out_path.read_text()[-3000:]
            assert time.monotonic() < deadline, out_path.read_text()[-3000:]
            time.sleep(0.5)
        log = out_path.read_text()
        assert f"Registered the Docker engine at {endpoint} as host 'local' (online)" in log
        assert f"(HTTP port {proxy_port})" in log
        assert f"sites.localhost:{proxy_port}/" in log
        status, body = get(proxy_port, "nothing-here.sites.localhost")
        assert status == 404 and b"No site here" in body  # Caddy, with the panel's config
        assert get(web_port, "127.0.0.1", "/api/v1/schema/")[0] == 200
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            raise
    pidfile = tmp_path / "var" / "caddy-run" / "caddy.pid"
    assert not pidfile.exists(), "Caddy was left running"
    with pytest.raises(OSError):
        get(proxy_port, "nothing-here.sites.localhost")
