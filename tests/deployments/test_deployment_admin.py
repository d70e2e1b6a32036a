"""The Deployment admin: read-only pages with the log's tail, and two actions through the
services (cancel, redeploy); a refusal is a message, never a server error."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from audit.models import AuditLog
from hosting import deployments, services
from hosting.admin import LOG_TAIL_BYTES
from hosting.models import Deployment
from tests.deployments import (
    S,
    deploy_site,
    move,
    request,
    succeeded,
)
from tests.factories import make_org, make_user

CHANGELIST = "admin:hosting_deployment_changelist"


@pytest.fixture
def site(db):
    org = make_org(make_user("owner@example.test"), "Acme", slug="acme")
    return deploy_site(org)


def change_url(deployment: Deployment) -> str:
    return reverse("admin:hosting_deployment_change", args=[deployment.pk])


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def act(client, action: str, *deployments_: Deployment):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(d.pk) for d in deployments_]},
        follow=True,
    )


# --- pages ------------------------------------------------------------------------------------


def test_changelist_shows_deployments_and_filters(staff_client, site):
    done = succeeded(site)
    queued = request(site)
    response = staff_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    page = response.content.decode()
    assert "acme/web" in page and done.commit_hash[:12] in page
    assert done.commit_hash not in page  # the short form only
    filtered = staff_client.get(reverse(CHANGELIST) + "?status__exact=queued")
    assert filtered.status_code == 200
    assert list(filtered.context["cl"].result_list) == [queued]
    by_trigger = staff_client.get(reverse(CHANGELIST) + "?trigger__exact=rollback")
    assert list(by_trigger.context["cl"].result_list) == []


def test_detail_is_read_only_and_shows_the_log(staff_client, site):
    deployment = succeeded(site)
    deployments.append_log(deployment, "building", "Step 1/3 : FROM busybox\n<script>x</script>\n")
    response = staff_client.get(change_url(deployment))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Step 1/3 : FROM busybox" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page
    assert 'name="_save"' not in page  # nothing to save
    assert "API_KEY (secret)" in page
    assert "gAAAA-not-shown" not in page  # snapshot values are never rendered
    assert "succeeded" in page


def test_detail_shows_only_the_last_20_kb_of_the_log(staff_client, site, settings):
    deployment = request(site)
    deployments.append_log(deployment, "building", "FIRST-LINE\n" + "a" * 30_000 + "\n")
    deployments.append_log(deployment, "building", "b" * 100 + "LAST-LINE\n")
    page = staff_client.get(change_url(deployment)).content.decode()
    assert "LAST-LINE" in page
    assert "FIRST-LINE" not in page
    assert "earlier output not shown" in page
    assert page.count("a") < 30_000
    assert page.count("a" * (LOG_TAIL_BYTES - 200)) == 1


def test_detail_of_a_deployment_without_output(staff_client, site):
    assert staff_client.get(change_url(request(site))).status_code == 200


def test_no_add_or_delete(staff_client, site):
    assert staff_client.get(reverse("admin:hosting_deployment_add")).status_code == 403
    deployment = request(site)
    url = reverse("admin:hosting_deployment_delete", args=[deployment.pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert Deployment.objects.filter(pk=deployment.pk).exists()


# --- actions ----------------------------------------------------------------------------------


def test_cancel_action_cancels_through_the_service(staff_client, staff, site):
    queued = request(site)
    response = act(staff_client, "cancel_deployments", queued)
    assert response.status_code == 200
    queued.refresh_from_db()
    assert queued.status == S.CANCELLED
    row = AuditLog.objects.get(action="deployment.cancel", target_id=str(queued.pk))
    assert row.actor == staff
    assert ("success", "Cancelled or asked to cancel 1 deployment(s).") in messages_of(response)


def test_cancel_action_on_an_ended_deployment_is_an_error_message(staff_client, site):
    done = succeeded(site)
    running = move(request(site), S.CLONING)
    response = act(staff_client, "cancel_deployments", done, running)
    assert response.status_code == 200
    levels = messages_of(response)
    assert any(level == "error" and "already ended" in text for level, text in levels), levels
    assert any(level == "success" for level, _ in levels)
    done.refresh_from_db()
    running.refresh_from_db()
    assert done.status == S.SUCCEEDED
    assert running.cancel_requested is True


def test_redeploy_queues_one_staff_deployment_per_site(
    staff_client, staff, site, enqueued, django_capture_on_commit_callbacks
):
    first, second = succeeded(site), move(request(site), S.CANCELLED)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(staff_client, "redeploy", first, second)
    assert ("success", "Queued 1 new deployment(s).") in messages_of(response)
    new = Deployment.objects.get(trigger="staff")
    assert new.site == site and new.triggered_by == staff and new.status == S.QUEUED
    assert new.branch == "main"
    assert enqueued == [str(new.pk)]
    assert AuditLog.objects.filter(action="deployment.create", target_id=str(new.pk)).exists()


def test_redeploy_of_a_deleted_site_is_an_error_message(staff_client, site):
    deployment = succeeded(site)
    services.delete_site(site, actor=None)
    response = act(staff_client, "redeploy", deployment)
    assert response.status_code == 200
    assert ("error", f"{deployment}: This site has been deleted.") in messages_of(response)
    assert not Deployment.objects.filter(trigger="staff").exists()


def test_staff_without_permissions_see_no_actions(site):
    viewer = make_user("viewer-staff@example.test", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deployment"))
    client = Client()
    client.force_login(viewer)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert response.context["action_form"] is None  # no action is offered
    deployment = request(site)
    act(client, "cancel_deployments", deployment)
    deployment.refresh_from_db()
    assert deployment.status == S.QUEUED
