"""Server-rendered pages: sign in (with its second step), sign out, register (the console has
the rest)."""

import time

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode

from accounts import services, two_factor
from accounts.forms import (
    BLOCKED_MESSAGE,
    RegisterForm,
    SecondFactorForm,
    ThrottledAuthenticationForm,
)
from accounts.login_throttle import login_blocked
from accounts.models import User
from audit.middleware import client_ip
from hostpanel.api.throttling import RegisterThrottle

PENDING_KEY = "_hp_second_factor_pending"
PENDING_SECONDS = 300


class ThrottledLoginView(auth_views.LoginView):
    """The password first; with two-factor sign-in on, the session only remembers who passed
    it (for PENDING_SECONDS) until the second step."""

    form_class = ThrottledAuthenticationForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if not two_factor.is_enabled(user):
            return super().form_valid(form)
        self.request.session.cycle_key()
        self.request.session[PENDING_KEY] = {
            "user": str(user.pk),
            "backend": user.backend,
            "at": time.time(),
            "next": self.get_success_url(),
        }
        return redirect("login-second-factor")


def second_factor(request):
    pending = request.session.get(PENDING_KEY)
    if not pending or time.time() - pending["at"] > PENDING_SECONDS:
        request.session.pop(PENDING_KEY, None)
        return redirect(reverse("login") + "?" + urlencode({"expired": "1"}))
    user = User.objects.filter(pk=pending["user"], is_active=True).first()
    if user is None:
        request.session.pop(PENDING_KEY, None)
        return redirect("login")
    form = SecondFactorForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        if login_blocked(user.email, client_ip(request)):
            form.add_error(None, BLOCKED_MESSAGE)
            status = 429
        elif kind := two_factor.verify(user, form.cleaned_data["code"]):
            del request.session[PENDING_KEY]
            request.second_factor = kind
            login(request, user, backend=pending["backend"])
            return redirect(pending["next"])
        else:
            user_login_failed.send(
                sender=__name__, credentials={"username": user.email}, request=request
            )
            form.add_error("code", "This code does not match (or was used already).")
            status = 400
    return render(
        request, "accounts/second_factor.html", {"form": form, "email": user.email}, status=status
    )


class LogoutView(auth_views.LogoutView):
    pass


def admin_login(request):
    """The admin signs in through the one sign-in page (and its second step)."""
    target = request.GET.get("next") or reverse("admin:index")
    return redirect(reverse("login") + "?" + urlencode({"next": target}))


def register(request):
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and not RegisterThrottle().allow_request(request, None):
        form.add_error(None, "Too many sign-up attempts. Try again later.")
        return render(request, "accounts/register.html", {"form": form}, status=429)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.register_with_code(**form.cleaned_data)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("home")
    return render(request, "accounts/register.html", {"form": form})
