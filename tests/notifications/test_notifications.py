"""Notifications: members' email choices, signed outgoing webhooks to a real HTTP server on
loopback, one delivery per recipient per event, and nothing for rolled-back changes."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.db import transaction

from accounts.models import Role
from audit.models import AuditLog
from audit.services import record
from notifications import services, tasks
from notifications.events import event_of
from notifications.models import Delivery, EmailSubscription, Webhook
from tests.api_mixin import ApiEndpointMixin, SingletonEndpointMixin
from tests.conftest import client_for
from tests.hosting.factories import the_site

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback_webhooks(settings):
    settings.NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1


class Receiver:
    """A webhook receiver on loopback that answers `status` and keeps what it got."""

    def __init__(self, status: int = 200):
        self.got: list[tuple[dict, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.got.append((dict(self.headers), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(status=200):
        made.append(Receiver(status))
        return made[-1]

    yield make
    for r in made:
        r.close()


def finish_deployment(site, status="failed") -> AuditLog:
    with transaction.atomic():
        return record(
            "deployment.finish",
            organization=site.organization,
            target=site,
            target_label=f"{site.slug} #1",
            changes={"status": {"before": "building", "after": status}},
        )


class TestWebhookApi(ApiEndpointMixin):
    audit_actions = {
        "create": "notification_webhook.create",
        "update": "notification_webhook.update",
        "delete": "notification_webhook.delete",
    }
    min_roles = {"read": Role.ADMIN, "create": Role.ADMIN, "update": Role.ADMIN}
    min_roles["delete"] = Role.ADMIN
    max_list_queries = 4

    @pytest.fixture(autouse=True)
    def _allow(self, settings):
        settings.NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE = True

    def list_url(self, cast):
        return f"/api/v1/organizations/{cast.org.slug}/notification-webhooks/"

    def detail_url(self, cast, obj):
        return f"{self.list_url(cast)}{obj.pk}/"

    def make_object(self, cast):
        return services.create_webhook(
            cast.org, actor=None, url="http://127.0.0.1:9/x", events=["deployment.failed"]
        )[0]

    def create_data(self, cast):
        return {"url": "http://127.0.0.1:9/new", "events": ["site.unhealthy"]}

    def update_data(self, cast):
        return {"events": ["deployment.failed", "deployment.succeeded"]}

    def assert_matches(self, data, body):
        assert body["events"] == sorted(data["events"])


class TestMyNotificationsApi(SingletonEndpointMixin):
    min_roles = {"read": Role.VIEWER, "write": Role.VIEWER}
    write_method = "patch"
    audit_action = "notification.preferences"
    max_read_queries = 4

    def url(self, org, site):
        return f"/api/v1/organizations/{org.slug}/notifications/"

    def write_data(self, cast):
        return {"email_events": ["deployment.succeeded"]}

    def snapshot(self, cast, site):
        return sorted(EmailSubscription.objects.values_list("user__email", "events"))


def test_members_choose_their_email_events_and_roles_have_defaults(cast):
    assert client_for(cast.owner).get("/api/v1/organizations/acme/notifications/").json()[
        "email_events"
    ] == ["deployment.failed", "site.unhealthy", "site.limit_breached"]
    viewer = client_for(cast.viewer)
    assert viewer.get("/api/v1/organizations/acme/notifications/").json()["email_events"] == []
    bad = viewer.patch(
        "/api/v1/organizations/acme/notifications/", {"email_events": ["nope"]}, format="json"
    )
    assert bad.status_code == 400 and "email_events" in bad.json()["fields"]


def test_an_event_emails_who_chose_it_and_posts_signed_to_webhooks(cast, receiver, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    site = the_site(cast.org)
    services.set_email_events(cast.org, cast.viewer, ["deployment.failed"])
    services.set_email_events(cast.org, cast.admin, [])  # opted out of the default
    hook_receiver = receiver()
    hook, secret = services.create_webhook(
        cast.org, actor=cast.owner, url=hook_receiver.url, events=["deployment.failed"]
    )
    entry = finish_deployment(site)
    assert tasks.notify.run(str(entry.pk)) == 3  # owner (default), viewer (chose), webhook

    assert sorted(m.to[0] for m in mail.outbox) == ["owner@example.test", "viewer@example.test"]
    assert "A deployment failed" in mail.outbox[0].subject
    assert "/o/acme/audit/" in mail.outbox[0].body
    [(headers, body)] = hook_receiver.got
    payload = json.loads(body)
    assert payload["event"] == "deployment.failed" and payload["organization"] == "acme"
    signed = f"{headers['X-Hostpanel-Timestamp']}.".encode() + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-Hostpanel-Signature"] == expected
    assert headers["X-Hostpanel-Event"] == "deployment.failed"

    # Run again (a redelivered task): nothing is sent twice.
    assert tasks.notify.run(str(entry.pk)) == 0
    assert len(mail.outbox) == 2 and len(hook_receiver.got) == 1
    assert Delivery.objects.filter(status="sent").count() == 3
    assert secret not in json.dumps(list(AuditLog.objects.values("changes")))
    assert Webhook.objects.get(pk=hook.pk).secret_encrypted != secret


def test_a_failing_webhook_is_recorded_and_retried(cast, receiver, monkeypatch):
    site = the_site(cast.org)
    failing = receiver(status=500)
    services.create_webhook(cast.org, actor=None, url=failing.url, events=["deployment.failed"])
    retried = []
    monkeypatch.setattr(
        tasks.retry_delivery, "apply_async", lambda args, countdown: retried.append(args[0])
    )
    tasks.notify.run(str(finish_deployment(site).pk))
    delivery = Delivery.objects.get(channel="webhook")
    assert (delivery.status, delivery.response_status, delivery.attempts) == ("failed", 500, 1)
    assert retried == [str(delivery.pk)]
    failing.close()
    fixed = receiver()
    Webhook.objects.update(url=fixed.url)
    Delivery.objects.filter(pk=delivery.pk).update(recipient=fixed.url)
    assert tasks.retry_delivery.run(str(delivery.pk)) == "sent"
    assert len(fixed.got) == 1


def test_an_event_is_handed_over_after_its_commit_and_never_for_a_rollback(
    cast, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(tasks, "send_notify", sent.append)
    site = the_site(cast.org)
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        finish_deployment(site)
        raise RuntimeError("the change failed")
    assert sent == []
    with django_capture_on_commit_callbacks(execute=True):
        entry = finish_deployment(site)
        assert sent == []  # not before the commit
    assert sent == [entry.pk]


def test_which_entries_are_events(cast):
    site = the_site(cast.org)
    entry = finish_deployment(site, "succeeded")
    assert event_of(entry) == "deployment.succeeded"
    assert event_of(finish_deployment(site, "cancelled")) is None
    assert event_of(AuditLog(action="site.limit_exceeded")) == "site.limit_breached"


def test_private_webhook_addresses_are_refused_unless_allowed(cast, settings):
    settings.NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE = False
    for url in ("http://127.0.0.1:6379/", "http://10.0.0.5/", "http://[::1]/", "ftp://x.example/"):
        refused = client_for(cast.admin).post(
            "/api/v1/organizations/acme/notification-webhooks/",
            {"url": url, "events": ["deployment.failed"]},
            format="json",
        )
        assert refused.status_code == 400 and "url" in refused.json()["fields"], url


def test_deliveries_are_listed_for_admins_only(cast):
    site = the_site(cast.org)
    tasks.notify.run(str(finish_deployment(site).pk))
    url = "/api/v1/organizations/acme/notification-deliveries/"
    listed = client_for(cast.admin).get(url).json()["results"]
    assert {d["recipient"] for d in listed} == {"owner@example.test", "admin@example.test"}
    assert client_for(cast.member).get(url).status_code == 403
    assert client_for(cast.outsider).get(url).status_code == 404


def test_staff_see_notifications_in_the_admin_without_secrets(cast, admin_client):
    services.create_webhook(
        cast.org, actor=None, url="http://127.0.0.1:9/x", events=["site.unhealthy"]
    )
    hook = Webhook.objects.get()
    page = admin_client.get(f"/admin/notifications/webhook/{hook.pk}/change/")
    assert page.status_code == 200 and b"127.0.0.1:9" in page.content
    assert hook.secret_encrypted.encode() not in page.content
    assert admin_client.get("/admin/notifications/delivery/").status_code == 200
    assert admin_client.get("/admin/notifications/emailsubscription/").status_code == 200
