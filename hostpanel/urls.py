from django.contrib import admin
from django.urls import include, path

from accounts import views as pages
from hosting import views as site_pages

handler400 = "hostpanel.api.exceptions.json_bad_request"
handler404 = "hostpanel.api.exceptions.json_not_found"
handler500 = "hostpanel.api.exceptions.json_server_error"

urlpatterns = [
    path("login/", pages.ThrottledLoginView.as_view(), name="login"),
    path("login/second-factor/", pages.second_factor, name="login-second-factor"),
    path("logout/", pages.LogoutView.as_view(), name="logout"),
    path("register/", pages.register, name="register"),
    path("visit/<uuid:site_id>/", site_pages.visit_private_site, name="visit-private-site"),
    path("admin/login/", pages.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(("hostpanel.api.urls", "api"), namespace="api")),
    path("", include("console.urls")),
]
