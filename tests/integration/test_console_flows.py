"""The console's main flow on real parts: a tenant deploys from the page and watches the log
until it succeeds, opens the site's URL through the real Caddy and sees the new version,
rolls back from the page and sees the old one again. Deployments run in a thread, as a
worker would run them."""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection
from playwright.sync_api import expect

from hosting import deployments, services
from hosting.reconcile import converge_now
from tests.conftest import route_task
from tests.docker_engines import free_port
from tests.integration.git_repos import Repo
from tests.integration.test_deployments import (  # noqa: F401  (fixtures)
    deploy_settings,
    served_dockerfile,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]
DEPLOY_TIMEOUT_MS = 90_000


def run_in_a_worker_thread(monkeypatch) -> list[threading.Thread]:
    threads: list[threading.Thread] = []

    def run(pk):
        def work():
            try:
                deployments.execute(pk, worker="browser-test")
            finally:
                connection.close()

        threads.append(threading.Thread(target=work, daemon=True))
        threads[-1].start()

    route_task(monkeypatch, "run_deployment", run)
    return threads


def test_deploy_watch_the_log_open_the_site_and_roll_back_from_the_pages(
    browse,
    proxied_host,
    org,
    owner,
    tmp_path,
    monkeypatch,
):
    threads = run_in_a_worker_thread(monkeypatch)
    repo = Repo(tmp_path / "repo")

    def version(n: int) -> None:
        repo.commit(
            f"v{n}", {"Dockerfile": served_dockerfile(), "www/index.html": f"version {n}\n"}
        )

    version(1)
    site = services.create_site(
        org, actor=owner, name="Shop", site_type="docker", repository_url=repo.url,
        internal_port=free_port(), limits={"memory_mb": 64, "cpu_percent": 50},
    )  # fmt: skip
    converge_now(site)
    page = browse(owner).page
    visitor = browse().page

    def deploy_and_wait(number: int) -> None:
        note = page.locator("#log-note")
        expect(page.locator("#log-title")).to_have_text(f"#{number}", timeout=10_000)
        expect(note).to_contain_text("finished", timeout=DEPLOY_TIMEOUT_MS)
        expect(note).to_contain_text("succeeded")

    page.goto("/o/acme/sites/shop/deployments/")
    page.get_by_role("button", name="Deploy").click()
    deploy_and_wait(1)
    expect(page.locator("#log")).to_contain_text("Successfully built")  # the build's output
    site.refresh_from_db()
    visitor.goto(f"{site.url}?after=1")  # each visit its own address: no cached answer
    expect(visitor.locator("body")).to_have_text(re.compile("version 1"))

    version(2)
    page.get_by_role("button", name="Deploy").click()
    deploy_and_wait(2)
    visitor.goto(f"{site.url}?after=2")
    expect(visitor.locator("body")).to_have_text(re.compile("version 2"))

    first = site.deployments.get(number=1)
    page.locator(f"#deployment-{first.pk}").get_by_role("button", name="Roll back to this").click()
    page.locator("#restore").get_by_role("button", name="Roll back to #1").click()
    deploy_and_wait(3)
    visitor.goto(f"{site.url}?after=3")
    expect(visitor.locator("body")).to_have_text(re.compile("version 1"))
    page.goto("/o/acme/sites/shop/")
    expect(page.locator("#site-url a")).to_have_attribute("href", site.url)
    expect(page.locator("#current")).to_contain_text("#3")
    for thread in threads:
        thread.join(30)
