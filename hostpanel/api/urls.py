"""`/api/v1/` — every app's routes in one place, so integrators see one stable map."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from accounts.api import views as accounts
from audit.api.views import AuditLogViewSet

ORG = r"organizations/(?P<org_slug>[-a-zA-Z0-9_]+)"

router = SimpleRouter()
router.register("tokens", accounts.ApiTokenViewSet, basename="token")
router.register("organizations", accounts.OrganizationViewSet, basename="organization")
router.register(f"{ORG}/members", accounts.MemberViewSet, basename="member")
router.register(f"{ORG}/invitations", accounts.InvitationViewSet, basename="invitation")
router.register(f"{ORG}/audit-logs", AuditLogViewSet, basename="auditlog")

urlpatterns = [
    path("me/", accounts.MeView.as_view(), name="me"),
    path(
        "invitations/<str:code>/accept/",
        accounts.AcceptInvitationView.as_view(),
        name="invitation-accept",
    ),
    path("registration-code/", accounts.RegistrationCodeView.as_view(), name="registration-code"),
    path("register/", accounts.RegisterView.as_view(), name="register"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    *router.urls,
]
