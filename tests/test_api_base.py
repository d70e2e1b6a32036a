"""What every API call shares: JSON errors, request ids, bearer tokens, the schema and docs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.staticfiles import finders
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiToken
from audit.models import AuditLog
from tests.api_mixin import assert_error
from tests.factories import make_token

ME = "/api/v1/me/"


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


# --- unknown URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing/", "/api/nothing", "/api/v2/me/"])
def test_unknown_api_url_is_json_404(db, api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_unknown_page_url_is_not_json(db, api):
    response = api.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# --- request ids -------------------------------------------------------------------------------


def test_supplied_request_id_is_echoed(cast, as_user):
    response = as_user(cast.owner).get(ME, HTTP_X_REQUEST_ID="client-id_1.2")
    assert response["X-Request-ID"] == "client-id_1.2"


def test_request_id_is_generated_when_missing_or_unsafe(cast, as_user):
    client = as_user(cast.owner)
    generated = client.get(ME)["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get(ME)["X-Request-ID"] != generated
    for unsafe in ("has space", "x" * 65, "semi;colon", "<script>"):
        echoed = client.get(ME, HTTP_X_REQUEST_ID=unsafe)["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", echoed), unsafe


def test_request_id_is_echoed_on_errors_too(db, api):
    assert api.get("/api/v1/nowhere/", HTTP_X_REQUEST_ID="lost-1")["X-Request-ID"] == "lost-1"
    assert api.get(ME, HTTP_X_REQUEST_ID="anon-1")["X-Request-ID"] == "anon-1"


def test_supplied_request_id_is_recorded_in_the_audit_row(cast, as_user):
    response = as_user(cast.owner).post(
        "/api/v1/organizations/", {"name": "Traced"}, HTTP_X_REQUEST_ID="trace-42"
    )
    assert response.status_code == 201
    row = AuditLog.objects.get(action="organization.create", request_id="trace-42")
    assert row.actor == cast.owner
    assert row.ip == "127.0.0.1"


# --- bearer tokens -----------------------------------------------------------------------------


def test_bearer_token_authenticates(cast):
    response = bearer(make_token(cast.member, ("read",))).get(ME)
    assert response.status_code == 200, response.content
    assert response.json()["email"] == "member@example.test"


def test_token_use_is_recorded_on_the_token_and_in_audit_rows(cast):
    raw = make_token(cast.member, ("read", "write"))
    token = ApiToken.objects.get(user=cast.member)
    assert token.last_used_at is None
    response = bearer(raw).post("/api/v1/organizations/", {"name": "By Token"})
    assert response.status_code == 201, response.content
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.last_used_ip == "127.0.0.1"
    row = AuditLog.objects.get(action="organization.create", actor=cast.member)
    assert row.token_id == token.pk


def test_session_changes_carry_no_token_id(cast, as_user):
    as_user(cast.member).post("/api/v1/organizations/", {"name": "By Session"})
    assert AuditLog.objects.get(action="organization.create", actor=cast.member).token_id is None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer hp_00000000_not-a-real-secret",  # well-formed, unknown
        "Bearer garbage",  # not shaped like one of ours
        "Bearer",  # no token at all
        "Bearer two parts",
    ],
)
def test_wrong_or_malformed_token_is_401_json(cast, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    body = assert_error(client.get(ME), 401, "authentication_failed")
    assert body["detail"]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_auth_scheme_is_case_insensitive(cast, scheme):
    # RFC 9110 section 11.1: the authentication scheme is a case-insensitive token.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {make_token(cast.member, ('read',))}")
    response = client.get(ME)
    assert response.status_code == 200, response.content


def test_failed_token_auth_asks_for_a_bearer_token(db, api):
    api.credentials(HTTP_AUTHORIZATION="Bearer hp_00000000_nope")
    assert api.get(ME)["WWW-Authenticate"] == "Bearer"


def test_right_prefix_wrong_secret_is_401(cast):
    raw = make_token(cast.member)
    forged = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    assert_error(bearer(forged).get(ME), 401, "authentication_failed")


def test_revoked_token_is_401(cast):
    raw = make_token(cast.member)
    services.revoke_api_token(ApiToken.objects.get(user=cast.member), actor=cast.member)
    assert_error(bearer(raw).get(ME), 401, "authentication_failed")


def test_expired_token_is_401(cast):
    raw = make_token(cast.member, expires_at=timezone.now() + timedelta(hours=1))
    ApiToken.objects.filter(user=cast.member).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_error(bearer(raw).get(ME), 401, "authentication_failed")


def test_token_of_a_deactivated_user_is_401(cast):
    raw = make_token(cast.member)
    services.update_user(cast.member, actor=None, is_active=False)
    assert_error(bearer(raw).get(ME), 401, "authentication_failed")


def test_no_credentials_is_401(db, api):
    assert_error(api.get(ME), 401, "not_authenticated")


# --- sessions need CSRF, tokens do not ---------------------------------------------------------


def test_session_write_without_csrf_token_is_403(cast):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(cast.member)
    response = client.post("/api/v1/organizations/", {"name": "Forged"})
    assert_error(response, 403, "permission_denied")
    assert "CSRF" in response.json()["detail"]


def test_token_write_needs_no_csrf_token(cast):
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(cast.member)}")
    assert client.post("/api/v1/organizations/", {"name": "Scripted"}).status_code == 201


# --- schema and docs ---------------------------------------------------------------------------

DOCUMENTED = {
    "/api/v1/me/": {"get", "patch"},
    "/api/v1/tokens/": {"get", "post"},
    "/api/v1/tokens/{id}/": {"delete"},
    "/api/v1/organizations/": {"get", "post"},
    "/api/v1/organizations/{org_slug}/": {"get", "patch", "delete"},
    "/api/v1/organizations/{org_slug}/members/": {"get"},
    "/api/v1/organizations/{org_slug}/members/{id}/": {"get", "patch", "delete"},
    "/api/v1/organizations/{org_slug}/invitations/": {"get", "post"},
    "/api/v1/organizations/{org_slug}/invitations/{id}/": {"get", "delete"},
    "/api/v1/invitations/{code}/accept/": {"post"},
    "/api/v1/organizations/{org_slug}/audit-logs/": {"get"},
}


@pytest.fixture
def schema(db, api) -> dict:
    response = api.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return response.json()


def test_schema_is_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "hostpanel API"


def test_schema_yaml_is_served_too(db, api):
    response = api.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"openapi: 3." in response.content


@pytest.mark.parametrize("path", sorted(DOCUMENTED))
def test_schema_documents_the_design_paths(schema, path):
    assert path in schema["paths"], sorted(schema["paths"])
    assert DOCUMENTED[path] <= set(schema["paths"][path])


def test_schema_documents_bearer_auth(schema):
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["tokenAuth"].items()


def test_organization_detail_has_no_put(schema):
    assert "put" not in schema["paths"]["/api/v1/organizations/{org_slug}/"]


def test_docs_page_uses_only_local_assets(db, api):
    response = api.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    absolute = re.findall(r"https?://[^\s\"'<>)]+", html)
    assert [url for url in absolute if not url.startswith("http://testserver/")] == []
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        if asset.startswith("/api/v1/docs/?"):  # Swagger UI's start-up script, as a file (CSP)
            script = api.get(asset)
            assert script.status_code == 200 and "javascript" in script["Content-Type"]
            external = re.findall(r"https?://[^\s\"'<>)]+", script.content.decode())
            assert [u for u in external if not u.startswith("http://testserver/")] == []
            continue
        assert asset.startswith("/static/"), asset
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not shipped locally"
