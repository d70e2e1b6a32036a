"""The cross-tenant matrix: every route of the API (walked from the URL resolver, so a new
endpoint is covered without anyone writing a test) x every method it answers x ten callers
(anonymous, an outsider, viewer, member, admin, owner, a token of another organization, a
read-only token, an expired token, a revoked token) -> the answer PERMISSIONS says. A route
or method missing from PERMISSIONS fails. Every request runs in a savepoint that is rolled
back, so each caller meets the same objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import URLPattern
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as accounts
from accounts.models import ROLE_RANK, Role, UserSession
from audit.models import AuditLog
from hosting import services
from hosting.models import Container, Domain, EnvironmentVariable, PortForward, Site
from hostpanel.api import urls as api_urls
from notifications import services as notifications
from tests.conftest import client_for
from tests.deployments import deploy_site, succeeded
from tests.factories import add_member, make_user
from tests.hosting.factories import make_template

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Rule:
    kind: str  # public, user, session, own, staff, org
    role: str = Role.VIEWER  # the least role, for org routes
    scope: str = ""  # the token scope it needs beyond read/write
    session_only: bool = False  # an org route tokens cannot use


PUBLIC, USER, SESSION, OWN, STAFF = (Rule(k) for k in ("public", "user", "session", "own", "staff"))
UNBOUND = Rule("unbound")  # any signed-in caller but a token bound to one organization
OWN_SESSION = Rule("own_session")  # the owner's own browser session: sessions only


def org(role: str) -> Rule:
    return Rule("org", role)


V, M, A, OWNERS = org(Role.VIEWER), org(Role.MEMBER), org(Role.ADMIN), org(Role.OWNER)
ANY = ("GET", "POST", "PUT", "PATCH", "DELETE")
PERMISSIONS: dict[str, dict[str, Rule]] = {
    "me": {"GET": USER, "PATCH": USER},
    "me-password": {"POST": SESSION},
    "me-sign-out-everywhere": {"POST": SESSION},
    "me-sessions": {"GET": SESSION},
    "me-session": {"DELETE": OWN_SESSION},
    "me-two-factor": {"GET": SESSION, "POST": SESSION},
    "me-two-factor-confirm": {"POST": SESSION},
    "me-two-factor-disable": {"POST": SESSION},
    "me-recovery-codes": {"POST": SESSION},
    "invitation-register": {"POST": PUBLIC},
    "invitation-accept": {"POST": USER},
    "registration-code": {"GET": STAFF, "POST": STAFF},
    "register": {"POST": PUBLIC},
    "site-limits": {"GET": V, "PATCH": A},
    "organization-quota": {"GET": V},
    "site-usage": {"GET": V},
    "organization-usage-csv": {"GET": V},
    "site-webhook": {"GET": V, "POST": A},
    "my-notifications": {"GET": V, "PATCH": V},
    "git-webhook": {"POST": PUBLIC},
    "platform-stats": {"GET": STAFF},
    "proxy-ask": {"GET": PUBLIC},
    "proxy-wake": dict.fromkeys(ANY, PUBLIC),
    "proxy-auth": dict.fromkeys(ANY, PUBLIC),
    "schema": {"GET": PUBLIC},
    "docs": {"GET": PUBLIC},
    "token-list": {"GET": USER, "POST": SESSION},
    "token-detail": {"GET": OWN, "DELETE": OWN},
    "organization-list": {"GET": USER, "POST": UNBOUND},
    "organization-detail": {"GET": V, "PATCH": A, "DELETE": OWNERS},
    "member-list": {"GET": V},
    "member-detail": {"GET": V, "PATCH": A, "DELETE": A},  # someone else's membership
    "invitation-list": {"GET": A, "POST": A},
    "invitation-detail": {"GET": A, "DELETE": A},
    "auditlog-list": {"GET": A},
    "auditlog-detail": {"GET": A},
    "site-list": {"GET": V, "POST": M},
    "site-detail": {"GET": V, "PATCH": M, "DELETE": OWNERS},
    "site-logs": {"GET": V},
    "site-volume-archive": {"GET": Rule("org", Role.ADMIN, scope="secrets:read")},
    # admins by the organization's terminal_access default; the site has no running container
    "site-terminal": {"POST": Rule("org", Role.ADMIN, session_only=True)},
    "site-restart": {"POST": M},
    "site-start": {"POST": M},
    "site-stop": {"POST": M},
    "domain-list": {"GET": V, "POST": A},
    "domain-detail": {"GET": V, "PATCH": A, "DELETE": A},
    "domain-verify": {"POST": A},
    "env-list": {"GET": V, "POST": M},
    "portforward-list": {"GET": V, "POST": A},
    "portforward-detail": {"GET": V, "DELETE": A},
    "env-detail": {"GET": V, "PATCH": M, "DELETE": M},
    "env-reveal": {"POST": A},
    "container-list": {"GET": V},
    "container-detail": {"GET": V},
    "sharelink-list": {"GET": A, "POST": A},
    "sharelink-detail": {"GET": A, "DELETE": A},
    "deployment-list": {"GET": V, "POST": M},
    "deployment-detail": {"GET": V},
    "deployment-cancel": {"POST": M},
    "deployment-log": {"GET": V},
    "deployment-rollback": {"POST": M},
    "deployment-log-stream": {"GET": V},
    "notificationwebhook-list": {"GET": A, "POST": A},
    "notificationwebhook-detail": {"GET": A, "PATCH": A, "DELETE": A},
    "notificationdelivery-list": {"GET": A},
    "sitetemplate-list": {"GET": USER},
    "sitetemplate-detail": {"GET": USER},
    "host-list": {"GET": STAFF, "POST": STAFF},
    "host-detail": {"GET": STAFF, "PATCH": STAFF},
    "host-ping": {"POST": STAFF},
}
CALLERS = [
    "anonymous", "outsider", "viewer", "member", "admin", "owner",
    "token_of_another_org", "read_only_token", "expired_token", "revoked_token",
]  # fmt: skip
ALLOWED = "allowed"
ANSWERED = "answered"


def routes() -> dict[str, tuple[URLPattern, list[str]]]:
    """name -> (pattern, the methods the view answers)."""
    found = {}
    for pattern in api_urls.urlpatterns:
        view = pattern.callback
        cls = view.cls
        allowed = [m.upper() for m in cls.http_method_names if m not in ("head", "options")]
        actions = getattr(view, "actions", None)
        methods = (
            [m.upper() for m in actions]
            if actions
            else [m for m in allowed if hasattr(cls, m.lower())]
        )
        found[pattern.name] = (pattern, [m for m in methods if m in allowed])
    return found


def expected(rule: Rule, caller: str, method: str) -> str | int:
    if rule.kind == "public":
        return ANSWERED  # its own rules (a signature, a name it routes): never a server error
    if caller in ("anonymous", "expired_token", "revoked_token"):
        return 401
    is_token = caller.endswith("_token") or caller == "token_of_another_org"
    if rule.kind == "session":
        return 403 if is_token else ALLOWED
    if rule.session_only and is_token:  # refused before the object is looked up
        return 403
    if rule.kind == "own_session":
        return 403 if is_token else ALLOWED if caller == "owner" else 404
    if caller == "read_only_token" and (method != "GET" or rule.scope):
        return 403
    if rule.kind == "staff":
        return 403
    if rule.kind == "user":
        return ALLOWED
    if rule.kind == "unbound":
        return 403 if caller == "token_of_another_org" else ALLOWED
    if rule.kind == "own":  # the owner's token: theirs, and not through an org-bound token
        return ALLOWED if caller in ("owner", "read_only_token") else 404
    if caller in ("outsider", "token_of_another_org"):
        return 404
    role = "owner" if caller == "read_only_token" else caller
    return ALLOWED if ROLE_RANK[Role(role)] >= ROLE_RANK[Role(rule.role)] else 403


@pytest.fixture
def world(cast, settings, monkeypatch, sent_tasks):
    """Callers, and one object of every kind in cast.org for the detail routes."""
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "allow_request", lambda self, request, view: True)
    settings.NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE = True
    settings.DEPLOY_ALLOW_FILE_REPOSITORIES = True
    services.create_host(actor=None, name="idle", endpoint="unix:///nonexistent/docker.sock")
    site = deploy_site(cast.org)
    Site.objects.filter(pk=site.pk).update(persistent_volume=True)  # its archive asks the engine
    add_member(cast.other_org, cast.owner, Role.OWNER)
    target = make_user("target@example.test")
    add_member(cast.org, target, Role.VIEWER)
    full = ["read", "write", "deploy", "secrets:read"]

    def token(**extra) -> APIClient:
        token, raw = accounts.create_api_token(actor=cast.owner, name="m", scopes=full, **extra)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client, token

    read_only = APIClient()
    read_only_token, raw = accounts.create_api_token(actor=cast.owner, name="ro", scopes=["read"])
    read_only.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    expired, expired_token = token()
    type(expired_token).objects.filter(pk=expired_token.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    revoked, revoked_token = token()
    accounts.revoke_api_token(revoked_token, actor=cast.owner)
    callers = {
        "anonymous": APIClient(),
        "outsider": client_for(cast.outsider),
        "viewer": client_for(cast.viewer),
        "member": client_for(cast.member),
        "admin": client_for(cast.admin),
        "owner": client_for(cast.owner),
        "token_of_another_org": token(organization=cast.other_org)[0],
        "read_only_token": read_only,
        "expired_token": expired,
        "revoked_token": revoked,
    }
    domain = services.add_domain(site, actor=None, hostname="www.example.com")
    var = services.set_env(site, actor=None, key="API_KEY", value="x", is_secret=True)
    forward = PortForward.objects.create(
        organization=cast.org, site=site, host=site.host, container_port=5432, public_port=40000
    )
    container = Container.objects.create(
        host=site.host, site=site, docker_id="c1", name="web-1", image="x", state="exited",
        port=31000, created=timezone.now(),
    )  # fmt: skip
    link, _ = services.create_share_link(
        site, actor=None, expires_at=timezone.now() + timedelta(days=1)
    )
    deployment = succeeded(site, cast.owner)
    invitation, _ = accounts.invite(
        cast.org, email="x@example.test", role="viewer", actor=cast.owner
    )
    hook, _ = notifications.create_webhook(
        cast.org, actor=None, url="http://127.0.0.1:9/x", events=["deployment.failed"]
    )
    template = make_template()
    kwargs = {
        "org_slug": cast.org.slug,
        "site_slug": site.slug,
        "code": "not-a-real-code",
        "webhook_id": site.webhook_id,
        "site_id": site.pk,
        "slug": template.slug,
        "session_id": UserSession.objects.get(user=cast.owner).public_id,
    }
    pks = {
        "token": read_only_token.pk,
        "organization": None,
        "member": cast.org.memberships.get(user=target).pk,
        "invitation": invitation.pk,
        "auditlog": AuditLog.objects.filter(organization=cast.org).first().pk,
        "domain": domain.pk,
        "env": var.pk,
        "portforward": forward.pk,
        "container": container.pk,
        "sharelink": link.pk,
        "deployment": deployment.pk,
        "notificationwebhook": hook.pk,
        "host": site.host_id,
    }
    assert Domain.objects.filter(pk=domain.pk).exists() and EnvironmentVariable.objects.exists()
    return callers, kwargs, pks


def engine_down(response, rule: Rule) -> bool:
    """503 naming an unreachable engine (the world's host is a socket that is not there) is
    the documented answer once the permission checks passed; the proxies' wake page too."""
    if response.status_code != 503:
        return False
    if rule.kind == "public":
        return True
    try:
        return response.json().get("code") in ("host_unavailable", "host_error")
    except ValueError:
        return False


def rollback_point() -> transaction.Atomic:
    """A savepoint rolled back after each request. Marked like the test case's own block, so
    the engine guard (hostpanel.db.in_transaction) lets the views' engine calls through as it
    does in every other test."""
    block = transaction.Atomic(using=None, savepoint=True, durable=False)
    block._from_testcase = True  # type: ignore[attr-defined]
    return block


def url_of(pattern: URLPattern, name: str, kwargs: dict, pks: dict) -> str:
    from django.urls import reverse

    wanted = dict(pattern.pattern.regex.groupindex)
    values = {k: v for k, v in kwargs.items() if k in wanted}
    if "pk" in wanted:
        values["pk"] = pks[name.split("-")[0]]
    return reverse(f"api:{name}", kwargs=values)


def test_every_route_and_method_is_in_the_permission_map():
    missing = [
        f"{name} {method}"
        for name, (_, methods) in routes().items()
        for method in methods
        if method not in PERMISSIONS.get(name, {})
    ]
    extra = [
        f"{name} {method}"
        for name, rules in PERMISSIONS.items()
        for method in rules
        if method not in routes().get(name, (None, []))[1]
    ]
    assert missing == [], f"add to PERMISSIONS: {missing}"
    assert extra == [], f"not answered by the API any more: {extra}"


@pytest.mark.parametrize("name", sorted(PERMISSIONS))
def test_each_caller_gets_what_the_map_says(world, name):
    callers, kwargs, pks = world
    pattern, methods = routes()[name]
    url = url_of(pattern, name, kwargs, pks)
    wrong = []
    for method in methods:
        rule = PERMISSIONS[name][method]
        for caller in CALLERS:
            with rollback_point():
                response = getattr(callers[caller], method.lower())(url, {}, format="json")
                transaction.set_rollback(True)
            status = response.status_code
            want = expected(rule, caller, method)
            if status >= 500 and not engine_down(response, rule):
                wrong.append(f"{method} {caller}: {status} (a server error)")
            elif want == ANSWERED:
                continue
            elif want == ALLOWED and status in (401, 403, 404, 405):
                wrong.append(f"{method} {caller}: {status}, wanted it allowed")
            elif want != ALLOWED and status != want:
                wrong.append(f"{method} {caller}: {status}, wanted {want}")
    assert wrong == [], f"{url}\n" + "\n".join(wrong)
