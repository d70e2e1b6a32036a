"""Deployment endpoints (`views`), their serializers, filters and event stream, and the git
webhook (`webhooks`)."""

from hosting.api.deployments.views import DeploymentViewSet
from hosting.api.deployments.webhooks import GitWebhookView, SiteWebhookViewSet

__all__ = ["DeploymentViewSet", "GitWebhookView", "SiteWebhookViewSet"]
