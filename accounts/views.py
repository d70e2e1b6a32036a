"""Server-rendered pages: sign in, sign out, register (the console has the rest)."""

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from accounts import services
from accounts.forms import RegisterForm, ThrottledAuthenticationForm
from hostpanel.api.throttling import RegisterThrottle


class ThrottledLoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


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
