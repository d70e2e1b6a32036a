"""Access to the private Docker engines of bin/docker-engines, for integration tests.

Outside CI, tests that need Docker skip with the reason when no engine can start; in CI
(CI=true) that is a failure, so the Docker tests always really run there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import time
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "hostpanel/busybox:test"
_endpoints: list[str] | None = None
_failure: str | None = None


def endpoints() -> list[str]:
    """Start (once, idempotently, under a lock shared by xdist workers) two engines."""
    global _endpoints, _failure
    if _endpoints is None and _failure is None:
        lock_path = Path(os.environ.get("HP_DOCKER_BASE", "/tmp/hp-docker")).with_suffix(".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = subprocess.run(
                [str(ROOT / "bin" / "docker-engines"), "start", "2"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        if result.returncode == 0:
            _endpoints = result.stdout.split()
        else:
            _failure = (result.stderr or result.stdout).strip()[-500:]
    if _endpoints is None:
        reason = f"Docker engines could not start: {_failure}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return _endpoints


def remove_all_containers() -> None:
    for endpoint in _endpoints or []:
        client = docker.DockerClient(base_url=endpoint, timeout=30)
        try:
            for container in client.containers.list(all=True, sparse=True):
                # It may go away on its own meanwhile (--rm, a build's container).
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
        finally:
            client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_dir(endpoint: str) -> Path:
    return Path(endpoint.removeprefix("unix://")).parent


def stop_engine(endpoint: str) -> None:
    """Stop one engine's dockerd (a real outage of that host)."""
    pid = int((engine_dir(endpoint) / "docker.pid").read_text())
    os.kill(pid, 15)
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"dockerd {pid} did not stop")


def restart_engines() -> None:
    """Start again whichever engine is down (bin/docker-engines start is idempotent)."""
    global _endpoints
    _endpoints = None
    endpoints()
