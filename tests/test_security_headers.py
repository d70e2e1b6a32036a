"""Every response carries the security headers; pages and the API alike."""

import pytest

from hostpanel.headers import CONTENT_SECURITY_POLICY
from tests.conftest import client_for


@pytest.mark.django_db
def test_pages_and_api_answers_carry_the_security_headers(cast):
    client = client_for(cast.viewer)
    for url in ("/", "/login/", "/api/v1/organizations/", "/api/v1/docs/", "/no/such/"):
        response = client.get(url)
        assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY.split("script-src")[1].split(";")[0]
        assert response["X-Frame-Options"] == "DENY", url
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["Referrer-Policy"] == "same-origin", url
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", url
        assert "camera=()" in response["Permissions-Policy"], url
