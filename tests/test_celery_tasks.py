"""Celery: tasks run eagerly against the test database; the beat schedule only names tasks
the worker knows, and every periodic entry expires instead of piling up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts import services
from accounts.models import RegistrationCode
from accounts.tasks import purge_expired_codes
from hostpanel.celery import app
from tests.factories import make_user


@pytest.fixture(scope="module")
def registered_tasks() -> set[str]:
    app.autodiscover_tasks(force=True)
    return set(app.tasks)


@pytest.mark.django_db
def test_purge_expired_codes_task_deletes_expired_and_keeps_live_codes():
    expired_by = make_user("staff1@example.test", is_staff=True)
    live_by = make_user("staff2@example.test", is_staff=True)
    services.create_registration_code(actor=expired_by)
    services.create_registration_code(actor=live_by)
    RegistrationCode.objects.filter(created_by=expired_by).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )

    result = purge_expired_codes.apply()

    assert result.successful(), result.traceback
    assert result.result == 1
    assert list(RegistrationCode.objects.values_list("created_by", flat=True)) == [live_by.pk]
    # Idempotent: a second run finds nothing more to do.
    assert purge_expired_codes.apply().result == 0
    assert RegistrationCode.objects.count() == 1


def test_the_app_reads_its_schedule_from_django_settings():
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE
    assert settings.CELERY_BEAT_SCHEDULE, "the beat schedule is empty"


def test_purge_task_is_registered_under_its_scheduled_name(registered_tasks):
    assert purge_expired_codes.name == "accounts.tasks.purge_expired_codes"
    assert purge_expired_codes.name in registered_tasks
    assert "accounts.tasks.no_such_task" not in registered_tasks


@pytest.mark.parametrize("entry", sorted(settings.CELERY_BEAT_SCHEDULE))
def test_beat_entry_names_a_registered_task(entry, registered_tasks):
    task = settings.CELERY_BEAT_SCHEDULE[entry]["task"]

    assert task in registered_tasks, f"beat entry {entry!r} names unknown task {task!r}"


@pytest.mark.parametrize("entry", sorted(settings.CELERY_BEAT_SCHEDULE))
def test_beat_entry_expires(entry):
    expires = settings.CELERY_BEAT_SCHEDULE[entry].get("options", {}).get("expires")

    assert expires is not None, f"beat entry {entry!r} has no expires option"
    seconds = expires.total_seconds() if isinstance(expires, timedelta) else expires
    assert seconds > 0
