"""The reference for bench/api.py: a bare DRF ListAPIView serving the same JSON as the sites
list (same fields, nested limits, host by name, select_related) with DRF's own token auth.
Loaded by the bench's gunicorn only (settings `bench.api_bare`)."""

from hostpanel.settings import *  # noqa: F403
from hostpanel.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework.authtoken"]
ROOT_URLCONF = "bench.api_bare_urls"
