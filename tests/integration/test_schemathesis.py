"""schemathesis (from PyPI) against the whole API, served on loopback by the live server with
a real engine behind it: no server error, every status code, content type and response body
as the OpenAPI schema documents, and the stateful phase following the schema's links. The
caller owns data in two organizations; throttles are lifted for the run; the example count
is bounded so the step stays well under three minutes. A failure prints schemathesis's
report with the curl line that reproduces it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.throttling import SimpleRateThrottle

from accounts import services as accounts
from hosting import services
from hosting.api import views as hosting_views
from tests.docker_engines import TEST_IMAGE
from tests.factories import make_org, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "response_schema_conformance",
        "content_type_conformance",
    ]
)
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "3")


def test_the_api_keeps_to_its_schema_under_generated_requests(
    docker_host, live_server, settings, monkeypatch, tmp_path
):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    settings.SITE_URL = live_server.url
    monkeypatch.setattr(SimpleRateThrottle, "allow_request", lambda self, request, view: True)
    # Domain verification asks DNS, which only the world outside has: a stand-in that finds
    # no TXT record (named so); everything else is the real thing.
    monkeypatch.setattr(hosting_views, "resolve_txt", lambda name: [])
    user = make_user("fuzz@example.test")
    for slug in ("one", "two"):
        org = make_org(user, slug.title(), slug=slug)
        services.create_site(
            org, actor=user, name="Web", slug="web", site_type="docker", image=TEST_IMAGE,
            start_command="sleep 600", desired_state="stopped", limits={"memory_mb": 32},
        )  # fmt: skip
    _, token = accounts.create_api_token(
        actor=user, name="fuzz", scopes=["read", "write", "deploy", "secrets:read"]
    )
    report = tmp_path / "report"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")), "run",
            f"{live_server.url}/api/v1/schema/?format=json",
            "--header", f"Authorization: Bearer {token}",
            "--checks", CHECKS,
            "--max-examples", MAX_EXAMPLES,
            "--seed", "20261204",
            "--workers", "2",
            "--request-timeout", "30",
            "--no-color",
            "--report", "junit", "--report-dir", str(report),
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    start = done.stdout.find("FAILURES")
    report_text = done.stdout[start if start >= 0 else -4000 :][:20000]
    print(report_text)
    assert done.returncode == 0, report_text
