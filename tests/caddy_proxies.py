"""Private Caddy proxies of bin/caddy, for integration tests (like tests/docker_engines.py).

Outside CI a test that needs Caddy skips with the reason when it cannot start; in CI
(CI=true) that is a failure. Each xdist worker has proxies of its own (named after it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE = os.environ.get("HP_CADDY_BASE", "/tmp/hp-caddy")


def _name(name: str) -> str:
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{name}"


def start(name: str = "1") -> str:
    """Start (or reuse) proxy `name`; returns its admin endpoint (unix:///...)."""
    result = subprocess.run(
        [str(ROOT / "bin" / "caddy"), "start", _name(name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HP_CADDY_BASE": BASE},
    )
    if result.returncode != 0:
        reason = f"Caddy could not start: {(result.stderr or result.stdout).strip()[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return result.stdout.split()[-1]


def stop(name: str = "1") -> None:
    subprocess.run(
        [str(ROOT / "bin" / "caddy"), "stop", _name(name)],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "HP_CADDY_BASE": BASE},
    )


def access_log(name: str = "1") -> Path:
    return Path(f"{BASE}-{_name(name)}/access.log")


def forget(name: str = "1") -> None:
    """Drop the proxy's autosave and access logs: its next start is empty, as on a new
    machine."""
    subprocess.run(
        [str(ROOT / "bin" / "caddy"), "forget", _name(name)],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "HP_CADDY_BASE": BASE},
    )


def log_of(name: str = "1") -> str:
    path = Path(f"{BASE}-{_name(name)}/caddy.log")
    return path.read_text()[-3000:] if path.exists() else ""


def root_certificate(name: str = "1") -> Path:
    """The root of the proxy's internal CA (made when it first issues a certificate)."""
    return Path(f"{BASE}-{_name(name)}/data/caddy/pki/authorities/local/root.crt")
