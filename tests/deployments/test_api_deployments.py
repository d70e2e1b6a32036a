"""`/organizations/{org}/sites/{site}/deployments/`: list, request (202), cancel, rollback."""

from __future__ import annotations

import json

import pytest

from accounts.models import ApiToken
from audit.models import AuditLog
from hosting.models import Deployment
from tests.api_mixin import ApiEndpointMixin, assert_error, assert_field_errors
from tests.conftest import client_for, token_client
from tests.deployments import (
    SNAPSHOT,
    S,
    deploy_site,
    deployment_url,
    deployments_url,
    move,
    request,
    succeeded,
)
from tests.factories import add_member
from tests.hosting.factories import make_site, site_url


class TestDeploymentApi(ApiEndpointMixin):
    audit_actions = {"create": "deployment.create", "update": None, "delete": None}
    min_roles = {"read": "viewer", "create": "member"}
    max_list_queries = 8

    def list_url(self, cast):
        return deployments_url(cast.org)

    def detail_url(self, cast, obj):
        return deployment_url(cast.org, obj)

    def make_object(self, cast):
        return request(deploy_site(cast.org), cast.member)

    def create_data(self, cast):
        return {"branch": "main"}

    def update_data(self, cast):
        return {}

    # A request is accepted (202), not created: the worker makes the deployment happen.
    def test_create(self, cast, obj):
        move(obj, S.CLONING)  # one already running: a new request queues another
        request_id = self.new_request_id()
        response = client_for(cast.member).post(
            self.list_url(cast), {"branch": "main"}, HTTP_X_REQUEST_ID=request_id
        )
        assert response.status_code == 202, response.content
        body = response.json()
        new = Deployment.objects.get(pk=body["id"])
        assert new.pk != obj.pk and new.number == obj.number + 1
        assert body["status"] == "queued" and body["trigger"] == "api"
        assert body["triggered_by"] == cast.member.email
        row = self.audit_row("create", request_id, cast.member, cast)
        assert row.target_id == str(new.pk)
        assert row.changes["trigger"] == "api" and row.changes["branch"] == "main"

    def test_create_with_empty_body_is_400(self, cast, obj):
        pytest.skip("every field is optional: an empty body deploys the site's branch")

    def test_token_for_another_organization_gets_404(self, cast, obj, op):
        add_member(cast.other_org, cast.owner, "viewer")
        client = token_client(cast.owner, ("read", "write", "deploy"), organization=cast.other_org)
        self.assert_refused(client, op, cast, obj, 404, "not_found")


# --- requesting -------------------------------------------------------------------------------


def test_empty_body_deploys_the_sites_branch_and_enqueues_after_commit(
    cast, enqueued, django_capture_on_commit_callbacks
):
    site = deploy_site(cast.org, branch="release")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(cast.member).post(deployments_url(cast.org), {})
    assert response.status_code == 202, response.content
    assert response.json()["branch"] == "release"
    assert enqueued == [response.json()["id"]]
    assert Deployment.objects.get(pk=response.json()["id"]).site == site


def test_token_with_deploy_scope_is_recorded_on_the_deployment(cast):
    deploy_site(cast.org)
    response = token_client(cast.member, ("read", "deploy")).post(deployments_url(cast.org), {})
    assert response.status_code == 202, response.content
    token = ApiToken.objects.get(user=cast.member)
    assert Deployment.objects.get(pk=response.json()["id"]).token_id == token.pk
    row = AuditLog.objects.get(action="deployment.create", target_id=response.json()["id"])
    assert row.token_id == token.pk


def test_session_request_records_no_token(cast):
    deploy_site(cast.org)
    response = client_for(cast.member).post(deployments_url(cast.org), {})
    assert Deployment.objects.get(pk=response.json()["id"]).token_id is None


@pytest.mark.parametrize("op", ["create", "cancel", "rollback"])
def test_token_with_write_but_without_deploy_scope_is_403(cast, op):
    site = deploy_site(cast.org)
    target = succeeded(site) if op == "rollback" else request(site)
    url = deployments_url(cast.org) if op == "create" else deployment_url(cast.org, target, op)
    client = token_client(cast.owner, ("read", "write"))
    before = (Deployment.objects.count(), AuditLog.objects.count())
    response = client.post(url, {})
    body = assert_error(response, 403, "permission_denied")
    assert "deploy" in body["detail"]
    assert (Deployment.objects.count(), AuditLog.objects.count()) == before
    target.refresh_from_db()
    assert target.status in (S.QUEUED, S.SUCCEEDED)


@pytest.mark.parametrize("op", ["cancel", "rollback"])
def test_token_with_deploy_scope_may_cancel_and_roll_back(cast, op):
    site = deploy_site(cast.org)
    target = succeeded(site) if op == "rollback" else request(site)
    response = token_client(cast.member, ("deploy",)).post(deployment_url(cast.org, target, op))
    assert response.status_code in (200, 202), response.content


@pytest.mark.parametrize("op", ["create", "cancel", "rollback"])
def test_viewer_cannot_deploy_cancel_or_roll_back(cast, op):
    site = deploy_site(cast.org)
    target = succeeded(site) if op == "rollback" else request(site)
    url = deployments_url(cast.org) if op == "create" else deployment_url(cast.org, target, op)
    client = client_for(cast.viewer)  # signing in is audited: before counting
    before = (Deployment.objects.count(), AuditLog.objects.count())
    assert_error(client.post(url, {}), 403, "permission_denied")
    assert (Deployment.objects.count(), AuditLog.objects.count()) == before


@pytest.mark.parametrize("who", ["outsider", "other_owner"])
@pytest.mark.parametrize(
    ("method", "part"),
    [
        ("get", None),
        ("post", None),
        ("get", ""),
        ("post", "cancel"),
        ("post", "rollback"),
        ("get", "log"),
        ("get", "log/stream"),
    ],
)
def test_outsiders_get_404_on_every_deployment_endpoint(cast, who, method, part):
    site = deploy_site(cast.org)
    target = succeeded(site)
    url = deployments_url(cast.org) if part is None else deployment_url(cast.org, target, part)
    client = client_for(getattr(cast, who))
    before = (Deployment.objects.count(), AuditLog.objects.count())
    response = getattr(client, method)(url)
    assert_error(response, 404, "not_found")
    assert (Deployment.objects.count(), AuditLog.objects.count()) == before


def test_deployment_of_another_sites_url_is_404(cast):
    deploy_site(cast.org)
    other = deploy_site(cast.org, slug="other")
    theirs = request(other)
    response = client_for(cast.owner).get(deployment_url(cast.org, theirs))
    assert_error(response, 404, "not_found")


def test_site_without_repository_is_400_on_its_field(cast):
    make_site(cast.org, name="Bare", slug="bare")
    response = client_for(cast.member).post(site_url(cast.org, "bare", "deployments"), {})
    assert "repository_url" in assert_field_errors(response)
    assert not Deployment.objects.exists()


@pytest.mark.parametrize("branch", ["--upload-pack=touch", "a..b", "x" * 101])
def test_bad_branch_is_400(cast, branch):
    deploy_site(cast.org)
    response = client_for(cast.member).post(deployments_url(cast.org), {"branch": branch})
    fields = assert_field_errors(response)
    assert {"branch", "repository_url"} & set(fields)
    assert not Deployment.objects.exists()


def test_file_repositories_are_refused_unless_allowed(cast, settings):
    deploy_site(cast.org)
    settings.DEPLOY_ALLOW_FILE_REPOSITORIES = False
    response = client_for(cast.member).post(deployments_url(cast.org), {})
    assert "repository_url" in assert_field_errors(response)


# --- detail, list -----------------------------------------------------------------------------


def test_detail_shows_the_documented_fields(cast):
    site = deploy_site(cast.org)
    target = succeeded(site, cast.member)
    rollback = client_for(cast.member).post(deployment_url(cast.org, target, "rollback")).json()
    body = client_for(cast.viewer).get(deployment_url(cast.org, target)).json()
    assert set(body) >= {
        "id",
        "number",
        "status",
        "trigger",
        "triggered_by",
        "branch",
        "commit_hash",
        "commit_message",
        "image_tag",
        "build_time_seconds",
        "error",
        "transitions",
        "progress",
        "created_at",
        "started_at",
        "finished_at",
        "rollback_of",
        "log_size",
    }
    assert "config_snapshot" not in body  # env values (encrypted or not) stay in the database
    # What a rollback to it restores: the site fields, the limits and the keys, no values.
    assert body["config"] == {
        "site": SNAPSHOT["site"],
        "limits": SNAPSHOT["limits"],
        "env": [{"key": "API_KEY", "is_secret": True}],
    }
    assert "gAAAA" not in json.dumps(body)
    assert body["triggered_by"] == cast.member.email
    assert [t["status"] for t in body["transitions"]] == [
        "queued",
        "cloning",
        "building",
        "starting",
        "healthy",
        "succeeded",
    ]
    assert body["progress"] == {"stage": "succeeded", "index": 5, "total": 5}
    assert body["started_at"] and body["finished_at"]
    assert rollback["rollback_of"] == str(target.pk)
    assert rollback["progress"] == {"stage": "queued", "index": 0, "total": 5}


def test_progress_of_a_failed_deployment_names_the_stage_it_failed_in(cast):
    deployment = move(request(deploy_site(cast.org)), S.CLONING, S.BUILDING, S.FAILED)
    body = client_for(cast.viewer).get(deployment_url(cast.org, deployment)).json()
    assert body["status"] == "failed"
    assert body["progress"] == {"stage": "building", "index": 2, "total": 5}


def test_list_filters_by_status_and_trigger_and_orders(cast):
    site = deploy_site(cast.org)
    first = succeeded(site)
    second = request(site)
    third = move(request(site), S.CANCELLED)
    rollback = client_for(cast.member).post(deployment_url(cast.org, first, "rollback")).json()
    client = client_for(cast.viewer)

    def ids(query: str) -> list[str]:
        response = client.get(f"{deployments_url(cast.org)}?{query}")
        assert response.status_code == 200, response.content
        return [d["id"] for d in response.json()["results"]]

    assert ids("") == [rollback["id"], str(third.pk), str(second.pk), str(first.pk)]
    assert ids("status=cancelled") == [str(third.pk)]
    assert ids("status=succeeded") == [str(first.pk)]
    assert ids("trigger=rollback") == [rollback["id"]]
    assert ids("ordering=number")[0] == str(first.pk)
    assert response_is_400(client, f"{deployments_url(cast.org)}?status=nonsense")


def response_is_400(client, url) -> bool:
    return client.get(url).status_code == 400


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_a_queued_deployment_ends_it_and_is_audited(cast):
    deployment = request(deploy_site(cast.org))
    response = client_for(cast.member).post(
        deployment_url(cast.org, deployment, "cancel"), HTTP_X_REQUEST_ID="cancel-1"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"]
    deployment.refresh_from_db()
    assert deployment.status == S.CANCELLED
    row = AuditLog.objects.get(action="deployment.cancel", request_id="cancel-1")
    assert row.actor == cast.member and row.organization == cast.org
    assert row.target_id == str(deployment.pk)


def test_cancel_a_running_deployment_asks_the_worker(cast):
    deployment = move(request(deploy_site(cast.org)), S.CLONING, S.BUILDING)
    response = client_for(cast.member).post(deployment_url(cast.org, deployment, "cancel"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "building"
    assert response.json()["cancel_requested"] is True


def test_cancelling_starts_the_next_queued_deployment(
    cast, enqueued, django_capture_on_commit_callbacks
):
    site = deploy_site(cast.org)
    first, second = request(site), request(site)
    with django_capture_on_commit_callbacks(execute=True):
        client_for(cast.member).post(deployment_url(cast.org, first, "cancel"))
    assert enqueued == [str(second.pk)]


@pytest.mark.parametrize("final", [S.SUCCEEDED, S.FAILED, S.CANCELLED])
def test_cancel_an_ended_deployment_is_400(cast, final):
    deployment = request(deploy_site(cast.org))
    steps = {
        S.SUCCEEDED: (S.CLONING, S.BUILDING, S.STARTING, S.HEALTHY, S.SUCCEEDED),
        S.FAILED: (S.CLONING, S.FAILED),
        S.CANCELLED: (S.CANCELLED,),
    }[final]
    deployment = move(deployment, *steps)
    client = client_for(cast.member)
    audits = AuditLog.objects.count()
    response = client.post(deployment_url(cast.org, deployment, "cancel"))
    assert "deployment" in assert_field_errors(response)
    deployment.refresh_from_db()
    assert deployment.status == final
    assert AuditLog.objects.count() == audits


# --- rollback ---------------------------------------------------------------------------------


def test_rollback_answers_202_with_the_new_deployment(cast, enqueued):
    site = deploy_site(cast.org)
    target = succeeded(site)
    request_id = "rollback-1"
    response = client_for(cast.member).post(
        deployment_url(cast.org, target, "rollback"), HTTP_X_REQUEST_ID=request_id
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"] != str(target.pk)
    assert body["trigger"] == "rollback"
    assert body["rollback_of"] == str(target.pk)
    assert body["status"] == "queued"
    assert body["number"] == target.number + 1
    row = AuditLog.objects.get(action="deployment.create", request_id=request_id)
    assert row.target_id == body["id"] and row.changes["rollback_of"] == str(target.pk)


@pytest.mark.parametrize("steps", [(), (S.CLONING,), (S.CLONING, S.FAILED), (S.CANCELLED,)])
def test_rollback_to_a_deployment_that_did_not_succeed_is_400(cast, steps):
    target = request(deploy_site(cast.org))
    if steps:
        target = move(target, *steps)
    count = Deployment.objects.count()
    response = client_for(cast.member).post(deployment_url(cast.org, target, "rollback"))
    assert "deployment" in assert_field_errors(response)
    assert Deployment.objects.count() == count


def test_unknown_deployment_id_is_404(cast):
    deploy_site(cast.org)
    client = client_for(cast.owner)
    base = deployments_url(cast.org)
    assert_error(client.get(f"{base}not-a-uuid/"), 404)
    assert_error(client.get(f"{base}00000000-0000-0000-0000-000000000000/"), 404)


def test_an_identical_request_while_one_is_queued_returns_the_queued_one(
    cast, enqueued, django_capture_on_commit_callbacks
):
    site = deploy_site(cast.org)
    client = client_for(cast.member)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(deployments_url(cast.org), {"branch": "main"})
        second = client.post(deployments_url(cast.org), {"branch": "main"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert Deployment.objects.filter(site=site).count() == 1
    assert AuditLog.objects.filter(action="deployment.create").count() == 1
    assert len(enqueued) == 1
    other = client.post(deployments_url(cast.org), {"branch": "develop"})
    assert other.json()["id"] != first.json()["id"]  # another branch is another build


def test_an_invalid_branch_is_reported_under_branch(cast):
    deploy_site(cast.org)
    response = client_for(cast.member).post(deployments_url(cast.org), {"branch": "-x --upload"})
    assert_field_errors(response, "branch")
