"""A site's containers through the generic endpoint tests: read by viewers, written only by
the sync worker and the reconciler (no API writes), invisible to outsiders."""

from __future__ import annotations

import uuid

from hosting.models import Container
from tests.api_mixin import ApiEndpointMixin
from tests.hosting.factories import site_url, the_site


class TestContainerApi(ApiEndpointMixin):
    audit_actions = {"create": None, "update": None, "delete": None}
    min_roles = {"read": "viewer"}
    max_list_queries = 8

    def list_url(self, cast):
        return site_url(cast.org, part="containers")

    def detail_url(self, cast, obj):
        return site_url(cast.org, part=f"containers/{obj.pk}")

    def make_object(self, cast):
        site = the_site(cast.org)
        return Container.objects.create(
            host=site.host,
            site=site,
            docker_id=uuid.uuid4().hex * 2,
            name=f"hp-{site.slug}-{uuid.uuid4().hex[:6]}",
            image="busybox",
            state="running",
        )

    def create_data(self, cast):
        return {}

    def update_data(self, cast):
        return {}
