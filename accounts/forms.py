from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.login_throttle import login_blocked
from audit.middleware import client_ip

BLOCKED_MESSAGE = "Too many failed sign-ins. Wait a few minutes and try again."


class ThrottleMixin:
    """Refuse to even check the password while the email or IP is over its failure limit."""

    def clean(self):
        email = self.data.get("username", "")
        ip = client_ip(self.request) if self.request is not None else None
        if login_blocked(email, ip):
            raise forms.ValidationError(BLOCKED_MESSAGE, code="throttled")
        return super().clean()


class ThrottledAuthenticationForm(ThrottleMixin, AuthenticationForm):
    pass


class RegisterForm(forms.Form):
    code = forms.CharField(max_length=32, label="Registration code")
    email = forms.EmailField()
    display_name = forms.CharField(max_length=150, required=False)
    password = forms.CharField(widget=forms.PasswordInput)


class SecondFactorForm(forms.Form):
    code = forms.CharField(
        max_length=32,
        label="Code",
        help_text="The 6 digits your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )
