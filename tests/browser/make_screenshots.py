"""The README's screenshots (docs/screenshots/), made on demand, not by bin/test:

.venv/bin/pytest -p no:cacheprovider tests/browser/make_screenshots.py
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from accounts.models import Role
from hosting import services
from hosting.deployments.logs import append_log
from hosting.models import DockerHost
from monitoring.models import UsageSample
from tests.deployments import succeeded
from tests.factories import add_member, make_org, make_user
from tests.hosting.factories import make_env, make_site

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_make_the_readme_screenshots(browse, settings):
    settings.DEPLOY_ALLOW_FILE_REPOSITORIES = True
    owner = make_user("olive@example.test", display_name="Olive")
    org = make_org(owner, "Acme", slug="acme")
    add_member(org, make_user("vic@example.test"), Role.VIEWER)
    services.create_host(actor=None, name="local", endpoint="unix:///nonexistent/docker.sock")
    DockerHost.objects.update(proxy_admin="unix:///run/caddy/admin.sock")
    shop = make_site(
        org, name="Shop", slug="shop", repository_url="https://git.example.com/shop.git"
    )
    for name in ("Blog", "Docs", "Status"):
        make_site(org, name=name, slug=name.lower())
    make_env(shop, key="DATABASE_URL", value="postgres://db/shop")
    make_env(shop, key="STRIPE_KEY", value="sk_live_x", is_secret=True)
    for _ in range(3):
        deployment = succeeded(shop, owner)
        append_log(deployment, "building", "Step 1/4 : FROM busybox\nSuccessfully built\n")
    now = timezone.now()
    UsageSample.objects.bulk_create(
        UsageSample(
            site=shop, organization=org, docker_id="c1", timestamp=now - timedelta(minutes=m),
            cpu_percent=12 + (m % 17), memory_bytes=(60 + m % 9) << 20,
            net_rx_bytes=5000 * m, net_tx_bytes=9000 * m,
        )
        for m in range(0, 24 * 60, 5)
    )  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    page = browse(owner, width=1100).page
    for path, name in (
        ("/o/acme/sites/shop/deployments/", "deployments"),
        ("/o/acme/sites/shop/usage/", "usage"),
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
