"""FastListSerializer gives what DRF's ListSerializer gives, row for row."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from hosting.api.serializers import SiteSerializer
from hosting.models import Site
from hostpanel.api.listing import FastListSerializer
from tests.factories import make_org, make_user
from tests.hosting.factories import make_site, make_template

pytestmark = pytest.mark.django_db


def drf_rows(serializer_class, rows, **kwargs):
    return [serializer_class(row, **kwargs).data for row in rows]


def test_sites_render_as_drf_renders_them():
    org = make_org(make_user())
    make_site(org, name="Plain")
    make_site(org, name="From template", template=make_template())
    unlimited = make_site(org, name="No limits")
    unlimited.limits.delete()  # a missing one-to-one: DRF leaves the field out
    rows = list(Site.objects.select_related("organization", "host", "limits", "template"))

    listed = SiteSerializer(rows, many=True).data

    assert isinstance(SiteSerializer(many=True), FastListSerializer)
    assert listed == drf_rows(SiteSerializer, rows)
    by_name = {row["name"]: row for row in listed}
    assert by_name["No limits"]["limits"] is None  # select_related cached "no row"
    assert by_name["Plain"]["limits"]["memory_mb"] == 64
    assert by_name["From template"]["template"] is not None
    assert by_name["Plain"]["template"] is None

    # Without select_related the missing row raises on access; DRF makes that None too.
    fetched = list(Site.objects.order_by("name"))
    listed = SiteSerializer(fetched, many=True).data
    assert listed == drf_rows(SiteSerializer, fetched)
    assert listed[1]["name"] == "No limits" and listed[1]["limits"] is None


class Odd(serializers.ModelSerializer):
    """Every field kind that must take DRF's own path."""

    org_slug = serializers.CharField(source="organization.slug")
    upper = serializers.SerializerMethodField()
    org = serializers.PrimaryKeyRelatedField(source="organization", read_only=True)
    caller = serializers.CharField(source="describe", default="none")

    class Meta:
        model = Site
        fields = ["slug", "org_slug", "upper", "org", "caller", "deleted_at"]
        list_serializer_class = FastListSerializer

    def get_upper(self, site):
        return site.slug.upper()


def test_fields_drf_resolves_itself_come_out_the_same():
    org = make_org(make_user())
    make_site(org, name="One")
    make_site(org, name="Two")
    rows = list(Site.objects.select_related("organization"))
    Site.describe = lambda self: f"site {self.slug}"  # a method source: DRF calls it
    try:
        listed = Odd(rows, many=True).data
        assert listed == drf_rows(Odd, rows)
    finally:
        del Site.describe
    assert listed[0]["caller"].startswith("site ")
    assert listed[0]["upper"] == listed[0]["slug"].upper()
    assert listed[0]["org"] == org.pk
    assert listed[0]["deleted_at"] is None


def test_mappings_go_through_drf():
    data = [{"slug": "a", "organization": {"slug": "o"}, "describe": "x", "deleted_at": None}]

    class Plain(serializers.Serializer):
        slug = serializers.CharField()
        org_slug = serializers.CharField(source="organization.slug")

        class Meta:
            list_serializer_class = FastListSerializer

    assert Plain(data, many=True).data == [{"slug": "a", "org_slug": "o"}]
