"""Two-factor sign-in: a TOTP authenticator (RFC 6238, 30 s steps, 6 digits) and one-time
recovery codes. Turning it on or off and renewing codes need proof (the password, a code),
and each is audited; a code is good once, one step of clock drift either side."""

from __future__ import annotations

import base64
import hmac
import secrets
import time

import pyotp
import qrcode
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from qrcode.image.svg import SvgPathImage

from accounts import secrets as creds
from accounts.models import RecoveryCode, TwoFactorDevice, User
from audit import actions
from audit.services import record
from hostpanel import crypto

ISSUER = "hostpanel"
STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
TOTP = "totp"
RECOVERY = "recovery"


def is_enabled(user: User) -> bool:
    return TwoFactorDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()


def required_for(user: User) -> bool:
    return bool(user.is_staff and settings.TWO_FACTOR_REQUIRED_FOR_STAFF)


def _device(user: User, *, confirmed: bool, lock: bool = False) -> TwoFactorDevice | None:
    qs = TwoFactorDevice.objects.filter(user=user, confirmed_at__isnull=not confirmed)
    return (qs.select_for_update() if lock else qs).first()


def _check_password(user: User, password: str) -> None:
    if not user.check_password(password or ""):
        raise ValidationError({"password": "This is not your password."})


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_code(uri: str) -> str:
    """The URI as a QR code, an SVG data: URI for an <img> (the CSP allows data: images)."""
    image = qrcode.make(uri, image_factory=SvgPathImage, box_size=8, border=2)
    return "data:image/svg+xml;base64," + base64.b64encode(image.to_string()).decode()


def begin(user: User, *, password: str) -> str:
    """A new, unconfirmed authenticator secret for the user (base32, for the app). Nothing
    changes for sign-in until `confirm` proves the app has it."""
    _check_password(user, password)
    if is_enabled(user):
        raise ValidationError(
            {"detail": "Two-factor sign-in is already on. Turn it off first to replace it."}
        )
    secret = pyotp.random_base32()
    TwoFactorDevice.objects.update_or_create(
        user=user,
        defaults={"secret_encrypted": crypto.encrypt(secret), "last_used_step": 0},
    )
    return secret


def _matching_step(device: TwoFactorDevice, code: str) -> int | None:
    code = "".join((code or "").split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(crypto.decrypt(device.secret_encrypted))
    now_step = int(time.time()) // STEP_SECONDS
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if step > device.last_used_step and hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def _new_recovery_codes(user: User) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        RecoveryCode.objects.create(user=user, code_hash=creds.keyed_hash(raw))
    return codes


def _normalized_recovery(code: str) -> str:
    return "".join(ch for ch in (code or "").lower() if ch.isalnum())


def confirm(user: User, *, code: str) -> list[str]:
    """Turn two-factor sign-in on with a first code from the app; returns the recovery codes,
    shown this once."""
    with transaction.atomic():
        device = _device(user, confirmed=False, lock=True)
        if device is None:
            raise ValidationError({"detail": "Start by asking for a new authenticator secret."})
        step = _matching_step(device, code)
        if step is None:
            raise ValidationError({"code": "This code does not match. Check the app's clock."})
        device.confirmed_at = timezone.now()
        device.last_used_step = step
        device.save(update_fields=["confirmed_at", "last_used_step"])
        codes = _new_recovery_codes(user)
        record(actions.TWO_FACTOR_ENABLE, actor=user, target=user)
    return codes


def verify(user: User, code: str) -> str | None:
    """Check a second factor and spend it: TOTP for a code of the app, RECOVERY for a recovery
    code, None when it is neither (or was used already)."""
    with transaction.atomic():
        device = _device(user, confirmed=True, lock=True)
        if device is None:
            return None
        step = _matching_step(device, code)
        if step is not None:
            TwoFactorDevice.objects.filter(pk=device.pk).update(last_used_step=step)
            return TOTP
        normalized = _normalized_recovery(code)
        if len(normalized) != 10:
            return None
        used = RecoveryCode.objects.filter(
            user=user, code_hash=creds.keyed_hash(normalized), used_at__isnull=True
        ).update(used_at=timezone.now())
        if not used:
            return None
        record(actions.RECOVERY_CODE_USE, actor=user, target=user)
        return RECOVERY


def _require_factor(user: User, code: str) -> str:
    kind = verify(user, code)
    if kind is None:
        raise ValidationError({"code": "This code does not match (or was used already)."})
    return kind


def disable(user: User, *, password: str, code: str) -> None:
    """Turn two-factor sign-in off (the password and a code, or a recovery code)."""
    _check_password(user, password)
    if not is_enabled(user):
        raise ValidationError({"detail": "Two-factor sign-in is not on."})
    if required_for(user):
        raise ValidationError({"detail": "Staff accounts must keep two-factor sign-in on."})
    with transaction.atomic():
        _require_factor(user, code)
        TwoFactorDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        record(actions.TWO_FACTOR_DISABLE, actor=user, target=user)


def renew_recovery_codes(user: User, *, code: str) -> list[str]:
    """New recovery codes (the old ones stop working); needs a code of the app."""
    with transaction.atomic():
        if _require_factor(user, code) != TOTP:
            raise ValidationError({"code": "Use a code from the app, not a recovery code."})
        codes = _new_recovery_codes(user)
        record(actions.RECOVERY_CODES_RENEW, actor=user, target=user)
    return codes


def recovery_codes_left(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


# Where staff without a second factor may still go when it is required: enrolment itself.
ENROLMENT_PATHS = ("/account/", "/api/v1/me/", "/logout/", "/login/", "/static/")


class StaffTwoFactorMiddleware:
    """With TWO_FACTOR_REQUIRED_FOR_STAFF, a staff session without a second factor reaches
    only its account page (to turn it on): pages redirect there, the API answers 403."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and required_for(user)
            and not request.path.startswith(ENROLMENT_PATHS)
            and not is_enabled(user)
        ):
            return self._refuse(request)
        return self.get_response(request)

    def _refuse(self, request):
        from django.http import JsonResponse
        from django.shortcuts import redirect

        message = "Staff accounts need two-factor sign-in: turn it on in your account first."
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message, "code": "two_factor_required"}, status=403)
        return redirect("/account/?two_factor=required#two-factor")
