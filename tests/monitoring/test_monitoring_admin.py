"""Monitoring in the admin: every page opens, nothing can be added, changed or deleted, and
the index shows the platform statistics."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hostpanel.models import TaskClaim
from monitoring.models import (
    DailyUsage,
    HealthCheck,
    HourlyUsage,
    LimitBreach,
    SiteHealth,
    UsageSample,
)
from tests.factories import make_org, make_user
from tests.hosting.factories import make_site

MODELS = [UsageSample, DailyUsage, HourlyUsage, HealthCheck, SiteHealth, LimitBreach, TaskClaim]


@pytest.fixture
def superuser(db):
    return make_user("root@example.test", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def rows(db):
    owner = make_user("owner@example.test")
    org = make_org(owner, "Acme", slug="acme")
    site = make_site(org, name="Web", slug="web")
    now = timezone.now()
    scoped = {"organization": org, "site": site}
    return {
        UsageSample: UsageSample.objects.create(
            **scoped, docker_id="c0ffee", cpu_percent=12.5, memory_bytes=64 * 2**20
        ),
        DailyUsage: DailyUsage.objects.create(**scoped, date=date(2025, 3, 1), samples=10),
        HourlyUsage: HourlyUsage.objects.create(
            **scoped,
            hour=now.replace(minute=0, second=0, microsecond=0),
            avg_memory_bytes=64 * 2**20,
            max_memory_bytes=65 * 2**20,
            bandwidth_bytes=2048,
            samples=120,
        ),
        HealthCheck: HealthCheck.objects.create(
            **scoped, ok=False, status_code=502, error="bad gateway"
        ),
        SiteHealth: SiteHealth.objects.create(**scoped, status="unhealthy", last_checked_at=now),
        LimitBreach: LimitBreach.objects.create(
            **scoped,
            limit="bandwidth",
            period=date(2025, 3, 1),
            measured=2048,
            allowed=1024,
            action_taken="notify",
        ),
        TaskClaim: TaskClaim.objects.create(
            name="hosting.sync_host:x", owner="abc", expires_at=now + timedelta(minutes=1)
        ),
    }


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_list_and_detail_pages_open(admin_client, rows, model):
    listing = admin_client.get(url(model, "changelist"))
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 1
    detail = admin_client.get(url(model, "change", rows[model].pk))
    assert detail.status_code == 200
    assert not detail.context["has_change_permission"]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_nothing_can_be_added_changed_or_deleted(admin_client, rows, model):
    obj = rows[model]
    before = model.objects.filter(pk=obj.pk).values().get()
    assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).values().get() == before


def test_usage_sample_list_shows_site_time_cpu_and_memory(admin_client, rows):
    page = admin_client.get(url(UsageSample, "changelist")).content.decode()
    assert "acme/web" in page
    assert "12.5" in page
    assert "64.0" in page  # MiB


def test_usage_samples_can_be_browsed_by_date(admin_client, rows):
    today = timezone.now()
    response = admin_client.get(
        url(UsageSample, "changelist"),
        {"timestamp__year": today.year, "timestamp__month": today.month},
    )
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


def test_task_claim_list_shows_whether_the_lease_is_held(admin_client, rows):
    page = admin_client.get(url(TaskClaim, "changelist")).content.decode()
    assert "hosting.sync_host:x" in page
    assert 'alt="True"' in page


def test_admin_index_shows_platform_statistics(admin_client, rows):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="platform-stats"' in page
    # root and owner; their personal organizations and Acme; one stopped site.
    assert '<td id="stat-users">2 active of 2</td>' in page
    assert '<td id="stat-organizations">3</td>' in page
    assert '<td id="stat-sites">0 running of 1</td>' in page
    assert '<td id="stat-hosts">1 online of 1</td>' in page
    # The app list is still there.
    assert url(UsageSample, "changelist") in page


def test_admin_index_needs_staff(rows):
    client = Client()
    client.force_login(make_user("plain@example.test"))
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "platform-stats" not in response.content.decode()
