"""The filter backend builds no filterset without query parameters, and filters with them."""

from __future__ import annotations

import pytest
from django_filters import FilterSet

from tests.conftest import client_for
from tests.factories import make_org, make_user
from tests.hosting.factories import make_site, sites_url

pytestmark = pytest.mark.django_db


def test_filters_apply_only_when_asked(monkeypatch):
    owner = make_user()
    org = make_org(owner)
    make_site(org, name="Alpha")
    make_site(org, name="Beta")
    built = []
    original = FilterSet.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(FilterSet, "__init__", counting)
    client = client_for(owner)

    assert client.get(sites_url(org)).json()["count"] == 2
    assert built == []
    assert [s["name"] for s in client.get(sites_url(org), {"q": "alp"}).json()["results"]] == [
        "Alpha"
    ]
    assert built == ["SiteFilterSet"]
    assert client.get(sites_url(org), {"desired_state": "bogus"}).status_code == 400
