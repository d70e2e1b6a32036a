"""Session sign-ins, failed sign-ins and sign-outs go to the audit trail; sign-ins and
sign-outs open and close the session's row (accounts/sessions.py)."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from accounts import sessions
from accounts.models import User
from audit import actions
from audit.services import record


@receiver(user_logged_in, dispatch_uid="audit_user_logged_in")
def audit_login(sender, request, user, **kwargs):
    second_factor = getattr(request, "second_factor", "") if request is not None else ""
    with transaction.atomic():
        if request is not None and hasattr(request, "session"):
            sessions.stamp(request, second_factor)
        record(
            actions.USER_LOGIN,
            actor=user,
            target=user,
            changes={"second_factor": second_factor} if second_factor else None,
        )


@receiver(user_logged_out, dispatch_uid="audit_user_logged_out")
def audit_logout(sender, request, user, **kwargs):
    if user is None:
        return
    with transaction.atomic():
        record(actions.USER_LOGOUT, actor=user, target=user)


@receiver(user_login_failed, dispatch_uid="audit_user_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs):
    email = str(credentials.get("username") or credentials.get("email") or "").strip().lower()
    user = User.objects.filter(email__iexact=email).only("pk").first() if email else None
    with transaction.atomic():
        record(
            actions.USER_LOGIN_FAILED,
            target_type="accounts.user",
            target_id=str(user.pk) if user else "",
            target_label=email[:254],
        )
