"""Access to the private Docker engines of bin/docker-engines, for integration tests.

Outside CI, tests that need Docker skip with the reason when no engine can start; in CI
(CI=true) that is a failure, so the Docker tests always really run there.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
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
                container.remove(force=True)
        finally:
            client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
