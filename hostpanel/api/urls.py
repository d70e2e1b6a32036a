"""`/api/v1/` — every app's routes in one place, so integrators see one stable map."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from accounts.api import views as accounts
from audit.api.views import AuditLogViewSet
from hosting.api import deployments as deploys
from hosting.api import edge
from hosting.api import views as hosting
from monitoring.api import views as monitoring
from notifications.api import views as notifications

ORG = r"organizations/(?P<org_slug>[-a-zA-Z0-9_]+)"
SITE = rf"{ORG}/sites/(?P<site_slug>[-a-zA-Z0-9_]+)"

router = SimpleRouter()
router.register("tokens", accounts.ApiTokenViewSet, basename="token")
router.register("organizations", accounts.OrganizationViewSet, basename="organization")
router.register(f"{ORG}/members", accounts.MemberViewSet, basename="member")
router.register(f"{ORG}/invitations", accounts.InvitationViewSet, basename="invitation")
router.register(f"{ORG}/audit-logs", AuditLogViewSet, basename="auditlog")
router.register(f"{ORG}/sites", hosting.SiteViewSet, basename="site")
router.register(f"{SITE}/domains", hosting.DomainViewSet, basename="domain")
router.register(f"{SITE}/env", hosting.EnvironmentVariableViewSet, basename="env")
router.register(f"{SITE}/port-forwards", hosting.PortForwardViewSet, basename="portforward")
router.register(f"{SITE}/containers", hosting.ContainerViewSet, basename="container")
router.register(f"{SITE}/share-links", hosting.ShareLinkViewSet, basename="sharelink")
router.register(f"{SITE}/deployments", deploys.DeploymentViewSet, basename="deployment")
router.register(
    f"{ORG}/notification-webhooks", notifications.WebhookViewSet, basename="notificationwebhook"
)
router.register(
    f"{ORG}/notification-deliveries", notifications.DeliveryViewSet, basename="notificationdelivery"
)
router.register("site-templates", hosting.SiteTemplateViewSet, basename="sitetemplate")
router.register("hosts", hosting.DockerHostViewSet, basename="host")

urlpatterns = [
    path("me/", accounts.MeView.as_view(), name="me"),
    path("me/password/", accounts.PasswordChangeView.as_view(), name="me-password"),
    path("me/sessions/", accounts.SessionListView.as_view(), name="me-sessions"),
    path(
        "me/sessions/<uuid:session_id>/",
        accounts.SessionRevokeView.as_view(),
        name="me-session",
    ),
    path("me/two-factor/", accounts.TwoFactorView.as_view(), name="me-two-factor"),
    path(
        "me/two-factor/confirm/",
        accounts.TwoFactorConfirmView.as_view(),
        name="me-two-factor-confirm",
    ),
    path(
        "me/two-factor/disable/",
        accounts.TwoFactorDisableView.as_view(),
        name="me-two-factor-disable",
    ),
    path(
        "me/two-factor/recovery-codes/",
        accounts.RecoveryCodesView.as_view(),
        name="me-recovery-codes",
    ),
    path(
        "me/sign-out-everywhere/",
        accounts.SignOutEverywhereView.as_view(),
        name="me-sign-out-everywhere",
    ),
    path(
        "invitations/<str:code>/register/",
        accounts.InvitationRegisterView.as_view(),
        name="invitation-register",
    ),
    path(
        "invitations/<str:code>/accept/",
        accounts.AcceptInvitationView.as_view(),
        name="invitation-accept",
    ),
    path("registration-code/", accounts.RegistrationCodeView.as_view(), name="registration-code"),
    path("register/", accounts.RegisterView.as_view(), name="register"),
    path(
        "organizations/<slug:org_slug>/sites/<slug:site_slug>/limits/",
        hosting.ResourceLimitViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="site-limits",
    ),
    path(
        "organizations/<slug:org_slug>/quota/",
        hosting.QuotaViewSet.as_view({"get": "retrieve"}),
        name="organization-quota",
    ),
    path(
        "organizations/<slug:org_slug>/sites/<slug:site_slug>/usage/",
        monitoring.SiteUsageView.as_view(),
        name="site-usage",
    ),
    path(
        "organizations/<slug:org_slug>/usage/daily.csv",
        monitoring.DailyUsageCsvView.as_view(),
        name="organization-usage-csv",
    ),
    path(
        "organizations/<slug:org_slug>/sites/<slug:site_slug>/webhook/",
        deploys.SiteWebhookViewSet.as_view({"get": "retrieve", "post": "rotate"}),
        name="site-webhook",
    ),
    path(
        "organizations/<slug:org_slug>/notifications/",
        notifications.MyNotificationsViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update"}
        ),
        name="my-notifications",
    ),
    path("hooks/git/<uuid:webhook_id>/", deploys.GitWebhookView.as_view(), name="git-webhook"),
    path("stats/", monitoring.PlatformStatsView.as_view(), name="platform-stats"),
    path("proxy/ask/", edge.ProxyAskView.as_view(), name="proxy-ask"),
    path("proxy/wake/<uuid:site_id>/", edge.ProxyWakeView.as_view(), name="proxy-wake"),
    path("proxy/auth/<uuid:site_id>/", edge.ProxyAuthView.as_view(), name="proxy-auth"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    *router.urls,
]
