"""The orjson renderer writes the bytes DRF's JSONRenderer writes."""

from __future__ import annotations

import datetime
import decimal
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers

from hostpanel.api.renderers import JSONRenderer

NOW = datetime.datetime(2026, 12, 3, 9, 30, 1, 123456, tzinfo=datetime.UTC)
SAMPLES = [
    {"a": 1, "b": [1.5, True, None], "c": "plain"},
    {
        "when": NOW,
        "naive": NOW.replace(tzinfo=None),
        "berlin": NOW.astimezone(ZoneInfo("Europe/Berlin")),
    },
    {"day": datetime.date(2026, 1, 2), "at": datetime.time(3, 4, 5, 600)},
    {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "price": decimal.Decimal("1.25")},
    {"lazy": gettext_lazy("This field is required."), "span": datetime.timedelta(seconds=90)},
    {"unicode": "grüße ✓ \u2028 line \u2029 para", 7: "int key"},
    [{"nested": {"deep": [NOW, {"x": "y"}]}}],
]


@pytest.mark.parametrize("data", SAMPLES)
def test_same_bytes_as_drf(data):
    assert JSONRenderer().render(data) == renderers.JSONRenderer().render(data)


def test_indented_and_out_of_range_take_drfs_path():
    data = {"big": 2**70, "when": NOW}
    assert JSONRenderer().render(data) == renderers.JSONRenderer().render(data)
    indented = "application/json; indent=2"
    assert JSONRenderer().render(SAMPLES[0], indented) == renderers.JSONRenderer().render(
        SAMPLES[0], indented
    )
    assert JSONRenderer().render(None) == b""


def test_the_api_answers_with_it(client):
    response = client.get("/api/v1/organizations/")
    assert response.status_code in (401, 403)
    assert type(response.accepted_renderer) is JSONRenderer
    assert response.json()["detail"]
