"""The tenant console's pages (DESIGN.md, "Tenant console")."""

from django.contrib.auth import views as auth_views
from django.urls import path

from console import views

urlpatterns = [
    path("", views.home, name="home"),
    path("account/", views.account, name="account"),
    path("account/tokens/", views.tokens, name="tokens"),
    path("invitations/<str:code>/", views.invitation, name="invitation"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="console/password_reset_sent.html"),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="console/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
    path("o/<slug:org_slug>/", views.org_sites, name="org-sites"),
    path("o/<slug:org_slug>/sites/new/", views.site_new, name="site-new"),
    path("o/<slug:org_slug>/sites/<slug:site_slug>/", views.site_section, name="site-detail"),
    path(
        "o/<slug:org_slug>/sites/<slug:site_slug>/<slug:section>/",
        views.site_section,
        name="site-section",
    ),
    path("o/<slug:org_slug>/<slug:section>/", views.org_section, name="org-section"),
]
