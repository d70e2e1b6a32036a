"""Every response carries the security headers; pages and the API alike."""

import pytest

from hostpanel.headers import CONTENT_SECURITY_POLICY, content_security_policy
from tests.conftest import client_for


@pytest.mark.django_db
def test_pages_and_api_answers_carry_the_security_headers(cast):
    client = client_for(cast.viewer)
    for url in ("/", "/login/", "/api/v1/organizations/", "/api/v1/docs/", "/no/such/"):
        response = client.get(url)
        assert response["Content-Security-Policy"] == content_security_policy(), url
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY.split("script-src")[1].split(";")[0]
        assert response["X-Frame-Options"] == "DENY", url
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["Referrer-Policy"] == "same-origin", url
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", url
        assert "camera=()" in response["Permissions-Policy"], url


@pytest.mark.django_db
def test_plain_http_is_redirected_but_the_proxies_callbacks_are_not(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    redirected = client.get("/login/")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
    assert client.get("/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200
    asked = client.get("/api/v1/proxy/ask/", {"domain": "nothing.example"})
    assert asked.status_code == 404  # answered on plain HTTP: Caddy calls the panel so


def test_the_terminals_socket_is_the_only_other_place_pages_connect_to(settings):
    settings.TERMINAL_URL = "ws://127.0.0.1:8001/ws/terminal/"
    assert "connect-src 'self' ws://127.0.0.1:8001;" in content_security_policy()
    settings.TERMINAL_URL = "wss://panel.example.com/ws/terminal/"
    assert "connect-src 'self' wss://panel.example.com;" in content_security_policy()
    settings.TERMINAL_URL = "/ws/terminal/"
    assert "connect-src 'self';" in content_security_policy()
