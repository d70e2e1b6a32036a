"""Git webhooks: signed pushes to the site's branch deploy; everything else is a clear 4xx.
And the site's webhook settings: the secret is shown once and stored encrypted."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Role
from audit.models import AuditLog
from hosting import services, webhooks
from hosting.models import Deployment, Site, WebhookDelivery
from hostpanel import crypto
from hostpanel.api.throttling import WebhookThrottle
from tests.api_mixin import SingletonEndpointMixin, assert_error
from tests.conftest import client_for, token_client
from tests.deployments import deploy_site
from tests.hosting.factories import make_site, site_url

PUSH = {"ref": "refs/heads/main", "after": "b" * 40, "repository": {"name": "web"}}


@pytest.fixture
def site(cast) -> Site:
    return deploy_site(cast.org)


@pytest.fixture
def secret(site) -> str:
    return webhooks.rotate_webhook_secret(site, None)


def hook_url(site: Site) -> str:
    return f"/api/v1/hooks/git/{site.webhook_id}/"


def encode(payload) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def github(site, secret, payload=PUSH, *, event="push", delivery=None, signature=None, **extra):
    body = encode(payload)
    headers = {
        "HTTP_X_GITHUB_EVENT": event,
        "HTTP_X_GITHUB_DELIVERY": delivery or str(uuid.uuid4()),
        "HTTP_X_HUB_SIGNATURE_256": signature or webhooks.sign(secret, body),
        **extra,
    }
    return APIClient().post(hook_url(site), body, content_type="application/json", **headers)


def generic(site, secret, payload=PUSH, *, timestamp=None, delivery=None, signature=None):
    body = encode(payload)
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "HTTP_X_HOSTPANEL_TIMESTAMP": str(timestamp),
        "HTTP_X_HOSTPANEL_DELIVERY": delivery or str(uuid.uuid4()),
        "HTTP_X_HOSTPANEL_SIGNATURE": signature or webhooks.sign(secret, body, timestamp),
    }
    return APIClient().post(hook_url(site), body, content_type="application/json", **headers)


def rejections(site):
    return AuditLog.objects.filter(action="webhook.rejected", target_id=str(site.pk))


# --- deliveries that deploy -------------------------------------------------------------------


def test_github_push_to_the_branch_queues_a_deployment(
    site, secret, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = github(site, secret)
    assert response.status_code == 202, response.content
    deployment = Deployment.objects.get(pk=response.json()["id"])
    assert deployment.site == site
    assert deployment.trigger == "webhook"
    assert deployment.triggered_by is None
    assert deployment.branch == "main"
    assert response.json()["status"] == "queued"
    assert enqueued == [str(deployment.pk)]
    row = AuditLog.objects.get(action="deployment.create", target_id=str(deployment.pk))
    assert row.actor is None and row.organization == site.organization
    assert row.changes["trigger"] == "webhook"


def test_generic_signature_with_a_fresh_timestamp_queues_a_deployment(site, secret):
    response = generic(site, secret)
    assert response.status_code == 202, response.content
    assert Deployment.objects.get(pk=response.json()["id"]).trigger == "webhook"


def test_generic_signature_covers_the_timestamp(site, secret):
    body = encode(PUSH)
    now = int(time.time())
    # Signed over the body alone (GitHub's way) is not valid for the generic header.
    response = generic(site, secret, timestamp=now, signature=webhooks.sign(secret, body))
    assert_error(response, 401)
    # A signature made for another timestamp does not hold for this one.
    response = generic(site, secret, timestamp=now, signature=webhooks.sign(secret, body, now - 1))
    assert_error(response, 401)
    assert not Deployment.objects.exists()


def test_form_encoded_github_payload_is_accepted(site, secret):
    body = urlencode({"payload": json.dumps(PUSH)}).encode()
    response = APIClient().post(
        hook_url(site),
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_GITHUB_DELIVERY="d-form",
        HTTP_X_HUB_SIGNATURE_256=webhooks.sign(secret, body),
    )
    assert response.status_code == 202, response.content


def test_site_on_another_branch_deploys_that_branch_only(cast, secret, site):
    services.update_site(site, actor=None, branch="release")
    assert github(site, secret, {"ref": "refs/heads/release"}).status_code == 202
    assert_error(github(site, secret), 422)
    assert list(Deployment.objects.values_list("branch", flat=True)) == ["release"]


# --- refused, and not deployed ----------------------------------------------------------------


def test_ping_answers_pong_without_deploying(site, secret):
    response = github(site, secret, {"zen": "Keep it logically awesome."}, event="ping")
    assert response.status_code == 200, response.content
    assert response.json() == {"detail": "pong"}
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("refs/heads/feature", "refs/heads/feature"),
        ("refs/tags/v1.0", "Tags are not deployed"),
        ("refs/heads/main-old", "refs/heads/main-old"),
    ],
)
def test_other_branches_and_tags_are_422_and_not_deployed(site, secret, ref, words):
    body = assert_error(github(site, secret, {**PUSH, "ref": ref}), 422)
    assert words in body["detail"] and "refs/heads/main" in body["detail"]
    assert not Deployment.objects.exists()


def test_deleted_branch_is_422(site, secret):
    assert_error(github(site, secret, {**PUSH, "deleted": True}), 422)
    assert not Deployment.objects.exists()


def test_other_events_are_422(site, secret):
    body = assert_error(github(site, secret, {"action": "opened"}, event="pull_request"), 422)
    assert "pull_request" in body["detail"]
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    "payload", [b"{not json", b"\xff\xfe", {"no": "ref"}, {"ref": 5}, ["refs/heads/main"]]
)
def test_malformed_payload_is_400(site, secret, payload):
    assert_error(github(site, secret, payload), 400, "invalid_payload")
    assert not Deployment.objects.exists()


def test_a_refused_delivery_can_be_sent_again_after_the_site_is_fixed(site, secret):
    services.update_site(site, actor=None, branch="release")
    assert_error(github(site, secret, delivery="d-1"), 422)
    services.update_site(site, actor=None, branch="main")
    assert github(site, secret, delivery="d-1").status_code == 202


def test_site_that_cannot_deploy_is_422(cast, site, secret):
    services.update_site(site, actor=None, repository_url="")
    body = assert_error(github(site, secret), 422)
    assert "repository" in body["detail"].lower()
    assert not WebhookDelivery.objects.exists()


# --- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    ["sha256=" + "0" * 64, "0" * 64, "sha1=abc", "sha256=", "sha256=zz", "sha256=é"],
)
def test_bad_signature_is_401_and_audited_without_body_or_secret(site, secret, signature):
    response = github(site, secret, signature=signature)
    body = assert_error(response, 401, "bad_signature")
    assert "signature" in body["detail"]
    assert not Deployment.objects.exists()
    (row,) = rejections(site)
    assert row.organization == site.organization
    assert row.actor is None
    assert row.changes["reason"] in ("signature mismatch", "malformed signature")
    stored = json.dumps(row.changes) + row.target_label
    assert secret not in stored and "refs/heads" not in stored


def test_signature_with_another_secret_is_401(site, secret):
    body = encode(PUSH)
    assert_error(github(site, secret, signature=webhooks.sign("not-the-secret", body)), 401)
    assert rejections(site).count() == 1


def test_signature_of_another_body_is_401(site, secret):
    other = webhooks.sign(secret, encode({**PUSH, "ref": "refs/heads/evil"}))
    assert_error(github(site, secret, signature=other), 401)


def test_missing_signature_is_401_and_audited(site, secret):
    response = APIClient().post(
        hook_url(site), encode(PUSH), content_type="application/json", HTTP_X_GITHUB_DELIVERY="x"
    )
    assert_error(response, 401)
    assert rejections(site).get().changes["reason"] == "missing signature"


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_stale_or_future_timestamp_is_401(site, secret, age):
    response = generic(site, secret, timestamp=int(time.time()) - age)
    assert_error(response, 401)
    assert "timestamp" in rejections(site).get().changes["reason"]
    assert not Deployment.objects.exists()


@pytest.mark.parametrize("timestamp", ["", "soon", "-5", "1.5"])
def test_missing_or_malformed_timestamp_is_401(site, secret, timestamp):
    body = encode(PUSH)
    response = APIClient().post(
        hook_url(site),
        body,
        content_type="application/json",
        HTTP_X_HOSTPANEL_TIMESTAMP=timestamp,
        HTTP_X_HOSTPANEL_DELIVERY="d",
        HTTP_X_HOSTPANEL_SIGNATURE=webhooks.sign(secret, body, timestamp),
    )
    assert_error(response, 401)


# --- replays ----------------------------------------------------------------------------------


def test_replayed_delivery_id_is_409(site, secret):
    assert github(site, secret, delivery="abc-1").status_code == 202
    response = github(site, secret, {**PUSH, "after": "c" * 40}, delivery="abc-1")
    assert_error(response, 409, "replayed")
    assert Deployment.objects.count() == 1
    assert rejections(site).get().changes["reason"] == "replayed delivery"


def test_github_push_older_than_the_delivery_memory_is_refused_as_a_replay(site, secret, settings):
    """GitHub signs no timestamp: once a delivery's id is purged, only the signed push time
    (`repository.pushed_at`) tells an old captured delivery from a new one."""
    settings.DEPLOY_LOG_RETENTION_DAYS = 90
    now = int(time.time())
    old = {**PUSH, "repository": {"name": "web", "pushed_at": now - 90 * 86400}}

    response = github(site, secret, old)

    assert_error(response, 409, "stale_push")
    assert "89 days" in response.json()["detail"]
    assert not Deployment.objects.exists()
    assert rejections(site).get().changes["reason"] == "push older than the replay window"
    assert not WebhookDelivery.objects.exists()  # not remembered: nothing was done
    recent = {**PUSH, "repository": {"name": "web", "pushed_at": now - 88 * 86400}}
    assert github(site, secret, recent).status_code == 202
    # A generic delivery has its own signed timestamp; a bool or string pushed_at is no time.
    assert generic(site, secret, old).status_code == 202
    odd = {**PUSH, "repository": {"pushed_at": True}}
    assert github(site, secret, odd).status_code == 202
    assert Deployment.objects.count() == 3


def test_same_signed_request_under_a_new_delivery_id_is_409(site, secret):
    assert generic(site, secret, timestamp=1_700_000_000 + 0, delivery="a").status_code == 401
    now = int(time.time())
    assert generic(site, secret, timestamp=now, delivery="a").status_code == 202
    assert_error(generic(site, secret, timestamp=now, delivery="b"), 409)
    assert github(site, secret, delivery="g1").status_code == 202
    assert_error(github(site, secret, delivery="g2"), 409)
    assert Deployment.objects.count() == 2


def test_delivery_ids_are_per_site(cast, site, secret):
    other = deploy_site(cast.org, slug="other")
    other_secret = webhooks.rotate_webhook_secret(other, None)
    assert github(site, secret, delivery="same").status_code == 202
    assert github(other, other_secret, delivery="same").status_code == 202


def test_missing_delivery_id_is_400(site, secret):
    body = encode(PUSH)
    response = APIClient().post(
        hook_url(site),
        body,
        content_type="application/json",
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_HUB_SIGNATURE_256=webhooks.sign(secret, body),
    )
    assert_error(response, 400, "missing_delivery")
    assert not Deployment.objects.exists()


def test_ping_is_remembered_too(site, secret):
    assert github(site, secret, {}, event="ping", delivery="p").status_code == 200
    assert_error(github(site, secret, {}, event="ping", delivery="p"), 409)


# --- which site -------------------------------------------------------------------------------


def test_unknown_webhook_is_a_json_404(site, secret):
    site.webhook_id = uuid.uuid4()  # not saved: no site has this id
    assert_error(github(site, secret), 404, "not_found")
    response = APIClient().post("/api/v1/hooks/git/not-a-uuid/", b"{}", content_type="x/y")
    assert_error(response, 404)


def test_deleted_site_is_404(site, secret):
    services.delete_site(site, actor=None)
    assert_error(github(site, secret), 404)


def test_site_of_a_deactivated_organization_is_404(cast, site, secret):
    account_services.set_organization_active(cast.org, active=False, actor=None)
    assert_error(github(site, secret), 404)
    assert not Deployment.objects.exists()


def test_site_without_a_secret_is_403(site):
    body = assert_error(github(site, "anything"), 403)
    assert body["detail"] == "webhook not configured"
    assert not Deployment.objects.exists()


def test_body_over_the_limit_is_413(site, secret):
    big = {**PUSH, "padding": "x" * webhooks.MAX_BODY_BYTES}
    assert_error(github(site, secret, big), 413)
    assert not Deployment.objects.exists()


def test_webhook_needs_no_session_or_token_and_ignores_them(cast, site, secret):
    body = encode(PUSH)
    client = token_client(cast.owner, ("read",))
    response = client.post(
        hook_url(site),
        body,
        content_type="application/json",
        HTTP_X_GITHUB_DELIVERY="t",
        HTTP_X_HUB_SIGNATURE_256=webhooks.sign(secret, body),
    )
    assert response.status_code == 202
    assert Deployment.objects.get().triggered_by is None


def test_webhook_is_throttled_per_hook(site, secret, monkeypatch):
    monkeypatch.setattr(WebhookThrottle, "THROTTLE_RATES", {"webhook": "2/min"})
    assert github(site, secret).status_code == 202
    assert github(site, secret, {"zen": "1"}, event="ping").status_code == 200
    assert_error(github(site, secret, {"zen": "2"}, event="ping"), 429)


# --- the site's webhook settings --------------------------------------------------------------


def webhook_settings_url(cast) -> str:
    return site_url(cast.org, "web", "webhook")


def test_rotation_shows_the_secret_once_and_stores_it_encrypted(cast, site):
    response = client_for(cast.admin).post(webhook_settings_url(cast), HTTP_X_REQUEST_ID="rot-1")
    assert response.status_code == 200, response.content
    body = response.json()
    raw = body["secret"]
    assert len(raw) >= 32
    assert body["has_secret"] is True
    assert body["url"] == f"http://testserver/api/v1/hooks/git/{site.webhook_id}/"
    assert body["webhook_id"] == str(site.webhook_id)
    assert response["Cache-Control"] == "no-store"

    site.refresh_from_db()
    assert site.webhook_secret and site.webhook_secret != raw
    assert raw not in site.webhook_secret
    assert crypto.decrypt(site.webhook_secret) == raw

    shown = client_for(cast.viewer).get(webhook_settings_url(cast))
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert shown.json()["has_secret"] is True
    assert raw not in shown.content.decode()

    row = AuditLog.objects.get(action="webhook.rotate", request_id="rot-1")
    assert row.actor == cast.admin and row.organization == cast.org
    assert row.target_id == str(site.pk)
    assert raw not in json.dumps(row.changes)
    assert site.webhook_secret not in json.dumps(row.changes)

    assert github(site, raw).status_code == 202


def test_rotation_invalidates_the_old_secret(cast, site, secret):
    client_for(cast.owner).post(webhook_settings_url(cast))
    assert_error(github(site, secret), 401)


def test_settings_without_secret_say_so(cast, site):
    body = client_for(cast.viewer).get(webhook_settings_url(cast)).json()
    assert body["has_secret"] is False and body["branch"] == "main"


def test_members_cannot_rotate(cast, site):
    client = client_for(cast.member)
    audits = AuditLog.objects.count()
    assert_error(client.post(webhook_settings_url(cast)), 403, "permission_denied")
    site.refresh_from_db()
    assert site.webhook_secret == ""
    assert AuditLog.objects.count() == audits


def test_read_only_token_cannot_rotate(cast, site):
    client = token_client(cast.owner, ("read",))
    assert_error(client.post(webhook_settings_url(cast)), 403)
    assert client.get(webhook_settings_url(cast)).status_code == 200


@pytest.mark.parametrize("who", ["outsider", "other_owner"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_outsiders_get_404_on_webhook_settings(cast, site, who, method):
    response = getattr(client_for(getattr(cast, who)), method)(webhook_settings_url(cast))
    assert_error(response, 404, "not_found")
    site.refresh_from_db()
    assert site.webhook_secret == ""


# --- the generic endpoint tests --------------------------------------------------------------


class TestWebhookSettingsApi(SingletonEndpointMixin):
    min_roles = {"read": Role.VIEWER, "write": Role.ADMIN}
    write_method = "post"  # rotate: a new secret, shown once
    audit_action = "webhook.rotate"
    max_read_queries = 4  # session, user, organization (+role), site

    def make_site(self, cast):
        return make_site(cast.org, name="Hooked")

    def url(self, org, site):
        return site_url(org, site.slug, "webhook")

    def snapshot(self, cast, site):
        return Site.objects.filter(pk=site.pk).values_list("webhook_secret", flat=True).first()
