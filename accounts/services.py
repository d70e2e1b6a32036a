"""Every state change of accounts: validates, writes in one transaction, records the audit entry."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from accounts import secrets as creds
from accounts import sessions, two_factor
from accounts.models import (
    ROLE_RANK,
    ApiToken,
    Invitation,
    Membership,
    Organization,
    RegistrationCode,
    Role,
    Scope,
    TerminalAccess,
    User,
    role_at_least,
)
from audit import actions
from audit.services import diff, record, snapshot

logger = logging.getLogger(__name__)
USER_FIELDS = ("email", "display_name", "is_active", "is_staff", "is_superuser")
ORGANIZATION_FIELDS = ("name", "slug", "is_active", "terminal_access")
TOKEN_FIELDS = ("name", "prefix", "scopes", "organization", "expires_at", "revoked_at")


# --- helpers ------------------------------------------------------------------------------


def role_of(user: User, organization: Organization) -> str | None:
    return (
        Membership.objects.filter(user=user, organization=organization)
        .values_list("role", flat=True)
        .first()
    )


def _unique_slug(base: str) -> str:
    root = (slugify(base) or "org")[:40].strip("-") or "org"
    slug, n = root, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{root}-{n}"
    return slug


def _clean_email(email: str) -> str:
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address."}) from None
    return User.objects.normalize_email(email)


def _check_password(password: str, user: User | None = None) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None


# --- users --------------------------------------------------------------------------------


def _create_user_rows(
    *,
    email: str,
    password: str | None,
    display_name: str,
    is_staff: bool,
    is_superuser: bool,
    password_hash: str | None = None,
    **extra: object,
) -> tuple[User, Organization]:
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "A user with this email already exists."})
    user = User(
        email=email,
        display_name=display_name,
        is_staff=is_staff,
        is_superuser=is_superuser,
        **extra,
    )
    if password_hash is not None:
        user.password = password_hash
    else:
        user.set_password(password)
    user.save()
    org = Organization.objects.create(
        name=(display_name or email.split("@")[0])[:100],
        slug=_unique_slug(email.split("@")[0]),
        is_personal=True,
    )
    Membership.objects.create(user=user, organization=org, role=Role.OWNER)
    return user, org


def create_user(
    *,
    email: str,
    password: str | None,
    display_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
    actor: User | None = None,
    check_password: bool = True,
) -> User:
    """Create a user with a personal organization they own."""
    email = _clean_email(email)
    if password is not None and check_password:
        _check_password(password, User(email=email, display_name=display_name))
    with transaction.atomic():
        user, org = _create_user_rows(
            email=email,
            password=password,
            display_name=display_name,
            is_staff=is_staff,
            is_superuser=is_superuser,
        )
        record(
            actions.USER_CREATE,
            actor=actor,
            target=user,
            changes={"after": snapshot(user, USER_FIELDS), "personal_organization": org.slug},
        )
    return user


def import_user(
    *,
    email: str,
    password_hash: str | None,
    display_name: str = "",
    is_active: bool = True,
    is_staff: bool = False,
    last_login: datetime | None = None,
    date_joined: datetime | None = None,
) -> tuple[User, Organization]:
    """A user brought in by the legacy import, with their personal organization: the
    password hash is kept as the old system stored it (None: no usable password, a reset
    link sets one). The import records one audit entry for its whole run, in the same
    transaction; call this inside it."""
    email = _clean_email(email)
    extra: dict[str, object] = {"is_active": is_active, "last_login": last_login}
    if date_joined is not None:
        extra["date_joined"] = date_joined
    return _create_user_rows(
        email=email,
        password=None,
        password_hash=password_hash or make_password(None),
        display_name=display_name[:150],
        is_staff=is_staff,
        is_superuser=is_staff,
        **extra,
    )


def import_organization(
    *, name: str, slug: str, is_active: bool = True, created_at: datetime | None = None
) -> Organization:
    """An organization brought in by the legacy import (its caller records the audit entry):
    its own slug when valid and free, otherwise one made from it or the name."""
    slug = slugify(slug or "")[:50].strip("-")
    if not slug or Organization.objects.filter(slug=slug).exists():
        slug = _unique_slug(slug or name)
    org = Organization(name=(name.strip() or slug)[:100], slug=slug, is_active=is_active)
    if created_at is not None:
        org.created_at = created_at
    org.save()
    return org


def import_membership(user: User, organization: Organization, role: str) -> tuple[Membership, bool]:
    """The user's role in the organization, from the legacy import: (membership, created).
    An existing membership keeps the higher of the two roles."""
    membership, created = Membership.objects.get_or_create(
        user=user, organization=organization, defaults={"role": role}
    )
    if not created and ROLE_RANK[Role(role)] > ROLE_RANK[Role(membership.role)]:
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
    return membership, created


def update_user(user: User, *, actor: User | None, **fields) -> User:
    allowed = {"display_name", "is_active", "is_staff", "is_superuser", "email"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    if "email" in fields:
        fields["email"] = _clean_email(fields["email"])
        if User.objects.filter(email__iexact=fields["email"]).exclude(pk=user.pk).exists():
            raise ValidationError({"email": "A user with this email already exists."})
    with transaction.atomic():
        before = snapshot(user, USER_FIELDS)
        for name, value in fields.items():
            setattr(user, name, value)
        user.save()
        changes = diff(before, snapshot(user, USER_FIELDS))
        if changes["after"]:
            record(actions.USER_UPDATE, actor=actor, target=user, changes=changes)
    return user


def set_password(user: User, password: str, *, actor: User | None) -> None:
    _check_password(password, user)
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        record(actions.USER_UPDATE, actor=actor, target=user, changes={"changed": ["password"]})


def change_password(
    user: User, *, current_password: str, new_password: str, keep_session: str | None = None
) -> User:
    """A signed-in user's new password (the current one proves it is them). Every other
    session ends (Django ties sessions to the password hash; their rows close too)."""
    if not user.check_password(current_password or ""):
        raise ValidationError({"current_password": "This is not your current password."})
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from None
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        sessions.revoke_others(user, keep_session)
        record(actions.USER_PASSWORD_CHANGE, actor=user, target=user)
    return user


def record_password_reset(user: User) -> None:
    """Django's reset view set the password; the audit trail says so."""
    with transaction.atomic():
        sessions.revoke_others(user, None)
        record(actions.USER_PASSWORD_RESET, actor=user, target=user)


def sign_out_everywhere(user: User, keep_session: str | None = None) -> User:
    """Ends every session of the user but KEEP_SESSION (the caller keeps its own by
    re-hashing it)."""
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(session_generation=F("session_generation") + 1)
        sessions.revoke_others(user, keep_session)
        user.refresh_from_db(fields=["session_generation"])
        record(actions.USER_SIGN_OUT_EVERYWHERE, actor=user, target=user)
    return user


def register_with_invitation(
    *, code: str, password: str, display_name: str = ""
) -> tuple[User, Membership]:
    """A new person signs up with an invitation alone: the account is the invited email,
    and the invitation is accepted in the same transaction."""
    with transaction.atomic():
        invitation = _pending_invitation(code)
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise ValidationError(
                {"code": "An account with this email exists: sign in, then accept."}
            )
        _check_password(password, User(email=invitation.email, display_name=display_name))
        user, org = _create_user_rows(
            email=invitation.email,
            password=password,
            display_name=display_name,
            is_staff=False,
            is_superuser=False,
        )
        record(
            actions.USER_REGISTER,
            actor=user,
            target=user,
            changes={
                "after": snapshot(user, USER_FIELDS),
                "personal_organization": org.slug,
                "invited_to": invitation.organization.slug,
            },
        )
        membership = accept_invitation(code, user=user)
    return user, membership


def register_with_code(*, code: str, email: str, password: str, display_name: str = "") -> User:
    """Seed 001: a new person signs up with a staff member's live registration code."""
    email = _clean_email(email)
    _check_password(password, User(email=email, display_name=display_name))
    code = (code or "").strip().upper()
    with transaction.atomic():
        reg = (
            RegistrationCode.objects.select_for_update()
            .filter(code_hash=creds.keyed_hash(code), valid_until__gt=timezone.now())
            .select_related("created_by")
            .first()
        )
        if reg is None or not reg.created_by.is_staff or not reg.created_by.is_active:
            raise ValidationError({"code": "This registration code is invalid or has expired."})
        user, org = _create_user_rows(
            email=email,
            password=password,
            display_name=display_name,
            is_staff=False,
            is_superuser=False,
        )
        issuer = reg.created_by
        reg.delete()  # single use
        record(
            actions.USER_REGISTER,
            actor=user,
            target=user,
            changes={
                "after": snapshot(user, USER_FIELDS),
                "personal_organization": org.slug,
                "code_issued_by": issuer.email,
            },
        )
    return user


def create_registration_code(*, actor: User) -> tuple[RegistrationCode, str]:
    """Generate the staff member's one live code (replacing any earlier one)."""
    if not (actor.is_staff and actor.is_active):
        raise PermissionDenied("Only staff can generate registration codes.")
    code = creds.new_registration_code()
    with transaction.atomic():
        RegistrationCode.objects.filter(created_by=actor).delete()
        reg = RegistrationCode.objects.create(
            created_by=actor,
            code_hash=creds.keyed_hash(code),
            valid_until=timezone.now() + settings.REGISTRATION_CODE_TTL,
        )
        record(
            actions.REGISTRATION_CODE_CREATE,
            actor=actor,
            target=reg,
            changes={"valid_until": reg.valid_until.isoformat()},
        )
    return reg, code


def purge_expired_codes() -> int:
    """Delete expired registration codes (seed 001 cleans them on every read)."""
    deleted, _ = RegistrationCode.objects.filter(valid_until__lte=timezone.now()).delete()
    return deleted


# --- organizations ------------------------------------------------------------------------


def create_organization(
    *, actor: User, name: str, slug: str = "", terminal_access: str = TerminalAccess.ADMINS
) -> Organization:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "This field is required."})
    if terminal_access not in TerminalAccess.values:
        raise ValidationError({"terminal_access": "Choose off, owners, admins or members."})
    if slug:
        if slugify(slug) != slug:
            raise ValidationError(
                {"slug": "Use lowercase letters, numbers, hyphens and underscores."}
            )
        if Organization.objects.filter(slug=slug).exists():
            raise ValidationError({"slug": "This slug is taken."})
    with transaction.atomic():
        org = Organization.objects.create(
            name=name, slug=slug or _unique_slug(name), terminal_access=terminal_access
        )
        Membership.objects.create(user=actor, organization=org, role=Role.OWNER)
        record(
            actions.ORGANIZATION_CREATE,
            actor=actor,
            organization=org,
            target=org,
            changes={"after": snapshot(org, ORGANIZATION_FIELDS)},
        )
    return org


def update_organization(org: Organization, *, actor: User | None, **fields) -> Organization:
    unknown = set(fields) - {"name", "slug", "terminal_access"}
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    if "terminal_access" in fields:
        if fields["terminal_access"] not in TerminalAccess.values:
            raise ValidationError({"terminal_access": "Choose off, owners, admins or members."})
        if (
            fields["terminal_access"] != org.terminal_access
            and actor is not None
            and role_of(actor, org) != Role.OWNER
        ):
            raise PermissionDenied("Only owners decide who may open terminals.")
    if "name" in fields and not str(fields["name"]).strip():
        raise ValidationError({"name": "This field may not be blank."})
    if "slug" in fields:
        slug = fields["slug"]
        if not slug or slugify(slug) != slug:
            raise ValidationError(
                {"slug": "Use lowercase letters, numbers, hyphens and underscores."}
            )
        if Organization.objects.filter(slug=slug).exclude(pk=org.pk).exists():
            raise ValidationError({"slug": "This slug is taken."})
    with transaction.atomic():
        before = snapshot(org, ORGANIZATION_FIELDS)
        for name, value in fields.items():
            setattr(org, name, value)
        org.save()
        changes = diff(before, snapshot(org, ORGANIZATION_FIELDS))
        if changes["after"]:
            record(
                actions.ORGANIZATION_UPDATE,
                actor=actor,
                organization=org,
                target=org,
                changes=changes,
            )
    return org


def set_organization_active(org: Organization, *, active: bool, actor: User | None) -> Organization:
    """Deactivate (the API's DELETE) or reactivate an organization. Rows are kept."""
    if org.is_personal and not active and not (actor is not None and actor.is_staff):
        raise ValidationError({"organization": "A personal organization cannot be deleted."})
    with transaction.atomic():
        before = snapshot(org, ORGANIZATION_FIELDS)
        org.is_active = active
        org.save(update_fields=["is_active", "updated_at"])
        record(
            actions.ORGANIZATION_UPDATE if active else actions.ORGANIZATION_DELETE,
            actor=actor,
            organization=org,
            target=org,
            changes=diff(before, snapshot(org, ORGANIZATION_FIELDS)),
        )
    return org


# --- memberships --------------------------------------------------------------------------


def _lock_owners(org: Organization) -> list[Membership]:
    """Lock the owner rows so two concurrent demotions cannot both pass the last-owner check."""
    return list(Membership.objects.select_for_update().filter(organization=org, role=Role.OWNER))


def _check_can_manage(actor: User | None, membership: Membership, new_role: str | None) -> None:
    """Admins manage members up to their own rank; only owners touch owners."""
    if actor is None or actor.is_staff:
        return
    actor_role = role_of(actor, membership.organization)
    if actor.pk == membership.user_id and new_role is None:
        return  # anyone may leave
    if actor_role is None or not role_at_least(actor_role, Role.ADMIN):
        raise PermissionDenied("Managing members needs the admin role.")
    for role in filter(None, (membership.role, new_role)):
        if ROLE_RANK[Role(role)] > ROLE_RANK[Role(actor_role)]:
            raise PermissionDenied(f"Only an owner can manage the {role} role.")


def add_member(
    org: Organization, user: User, role: str, *, actor: User | None, action: str = ""
) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"Choose one of: {', '.join(Role.values)}."})
    with transaction.atomic():
        try:
            with transaction.atomic():
                membership = Membership.objects.create(user=user, organization=org, role=role)
        except IntegrityError:
            raise ValidationError(
                {"user": "This user is already a member of the organization."}
            ) from None
        record(
            action or actions.MEMBER_ADD,
            actor=actor,
            organization=org,
            target=membership,
            target_label=user.email,
            changes={"after": {"user": user.email, "role": role}},
        )
    return membership


def change_role(membership: Membership, role: str, *, actor: User | None) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"Choose one of: {', '.join(Role.values)}."})
    _check_can_manage(actor, membership, role)
    with transaction.atomic():
        owners = _lock_owners(membership.organization)
        membership.refresh_from_db()
        if (
            membership.role == Role.OWNER
            and role != Role.OWNER
            and len(owners) == 1
            and owners[0].pk == membership.pk
        ):
            raise ValidationError(
                {"role": "An organization must keep at least one owner: promote another first."}
            )
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
        if before != role:
            record(
                actions.MEMBER_UPDATE,
                actor=actor,
                organization=membership.organization,
                target=membership,
                target_label=membership.user.email,
                changes={"before": {"role": before}, "after": {"role": role}},
            )
    return membership


def remove_member(membership: Membership, *, actor: User | None) -> None:
    _check_can_manage(actor, membership, None)
    with transaction.atomic():
        owners = _lock_owners(membership.organization)
        membership.refresh_from_db()
        if membership.role == Role.OWNER and len(owners) == 1:
            raise ValidationError(
                {"role": "An organization must keep at least one owner: promote another first."}
            )
        record(
            actions.MEMBER_REMOVE,
            actor=actor,
            organization=membership.organization,
            target=membership,
            target_label=membership.user.email,
            changes={"before": {"user": membership.user.email, "role": membership.role}},
        )
        membership.delete()


# --- invitations --------------------------------------------------------------------------


def invite(
    org: Organization, *, email: str, role: str, actor: User, expires_at: datetime | None = None
) -> tuple[Invitation, str]:
    """Invite an email with a role. Returns the invitation and its code (shown once)."""
    email = _clean_email(email)
    if role not in Role.values:
        raise ValidationError({"role": f"Choose one of: {', '.join(Role.values)}."})
    # Who may invite at all is the viewset's role map; nobody grants more than they hold.
    actor_role = role_of(actor, org)
    if actor_role is None or ROLE_RANK[Role(role)] > ROLE_RANK[Role(actor_role)]:
        raise PermissionDenied(f"Only an owner can invite with the {role} role.")
    now = timezone.now()
    expires_at = expires_at or now + settings.INVITATION_TTL
    if expires_at <= now:
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if Membership.objects.filter(organization=org, user__email__iexact=email).exists():
        raise ValidationError({"email": "This person is already a member."})
    if Invitation.objects.filter(organization=org, email__iexact=email).pending().exists():
        raise ValidationError(
            {"email": "A pending invitation for this email exists; revoke it first."}
        )
    code = creds.new_invitation_code()
    with transaction.atomic():
        invitation = Invitation.objects.create(
            organization=org,
            email=email,
            role=role,
            code_hash=creds.keyed_hash(code),
            invited_by=actor,
            expires_at=expires_at,
        )
        record(
            actions.MEMBER_INVITE,
            actor=actor,
            organization=org,
            target=invitation,
            changes={"after": {"email": email, "role": role, "expires_at": expires_at.isoformat()}},
        )
        transaction.on_commit(lambda: _send_invitation_email(invitation, code))
    return invitation, code


def _send_invitation_email(invitation: Invitation, code: str) -> None:
    send_mail(
        subject=f"You are invited to {invitation.organization.name} on hostpanel",
        message=(
            f"{invitation.invited_by} invited you to join {invitation.organization.name} "
            f"as {invitation.role}.\n\nOpen this link to accept (and to create your account "
            f"if you have none yet):\n{settings.SITE_URL.rstrip('/')}/invitations/{code}/\n\n"
            f"The invitation expires at {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
        ),
        from_email=None,
        recipient_list=[invitation.email],
        fail_silently=True,
    )


def revoke_invitation(invitation: Invitation, *, actor: User | None) -> Invitation:
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.status != "pending":
            raise ValidationError(
                {"invitation": f"Only a pending invitation can be revoked ({invitation.status})."}
            )
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at", "updated_at"])
        record(
            actions.INVITATION_REVOKE,
            actor=actor,
            organization=invitation.organization,
            target=invitation,
        )
    return invitation


def _pending_invitation(code: str) -> Invitation:
    """The pending invitation the code proves, locked; else a 400 that tells nothing more."""
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("organization")
        .filter(code_hash=creds.keyed_hash(code or ""))
        .first()
    )
    if (
        invitation is None
        or invitation.status != "pending"
        or not invitation.organization.is_active
    ):
        raise ValidationError({"code": "This invitation is invalid, expired or already used."})
    return invitation


def accept_invitation(code: str, *, user: User) -> Membership:
    """Accept once, as the invited email. Unknown, expired, used or revoked codes are 400."""
    with transaction.atomic():
        invitation = _pending_invitation(code)
        if invitation.email.lower() != user.email.lower():
            raise ValidationError({"code": "This invitation was sent to another email address."})
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by", "updated_at"])
        return add_member(
            invitation.organization,
            user,
            invitation.role,
            actor=user,
            action=actions.INVITATION_ACCEPT,
        )


# --- API tokens ---------------------------------------------------------------------------


def create_api_token(
    *,
    actor: User,
    name: str,
    scopes: list[str],
    organization: Organization | None = None,
    expires_at: datetime | None = None,
    otp_code: str = "",
) -> tuple[ApiToken, str]:
    """Create a token; returns it with its full value, which is never shown again. With
    two-factor sign-in on, OTP_CODE (a code of the authenticator) must come too."""
    errors: dict[str, str] = {}
    if not (name or "").strip():
        errors["name"] = "This field is required."
    scopes = sorted(set(scopes or []))
    if not scopes:
        errors["scopes"] = "Give at least one scope."
    elif bad := [s for s in scopes if s not in Scope.values]:
        errors["scopes"] = f"Unknown scope(s): {', '.join(bad)}. Use {', '.join(Scope.values)}."
    if expires_at is not None and expires_at <= timezone.now():
        errors["expires_at"] = "The expiry must be in the future."
    if organization is not None and role_of(actor, organization) is None:
        errors["organization"] = "You are not a member of this organization."
    if errors:
        raise ValidationError(errors)
    if two_factor.is_enabled(actor) and two_factor.verify(actor, otp_code) != two_factor.TOTP:
        raise ValidationError(
            {"otp_code": "Two-factor sign-in is on: give a current code of your authenticator."}
        )
    raw, prefix = creds.new_api_token()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=actor,
            organization=organization,
            name=name.strip(),
            prefix=prefix,
            key_hash=creds.keyed_hash(raw),
            scopes=scopes,
            expires_at=expires_at,
        )
        record(
            actions.TOKEN_CREATE,
            actor=actor,
            organization=organization,
            target=token,
            changes={"after": snapshot(token, TOKEN_FIELDS)},
        )
    return token, raw


def revoke_api_token(token: ApiToken, *, actor: User | None) -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is not None:
            raise ValidationError({"token": "This token is already revoked."})
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
        record(
            actions.TOKEN_REVOKE,
            actor=actor,
            organization=token.organization,
            target=token,
        )
    return token


def authenticate_token(raw: str) -> ApiToken | None:
    """The active token this raw value proves, or None."""
    prefix = creds.split_api_token(raw)
    if prefix is None:
        return None
    token = ApiToken.objects.active().select_related("user").filter(prefix=prefix).first()
    if token is None or not creds.hashes_match(raw, token.key_hash):
        return None
    if not token.user.is_active:
        return None
    return token


def note_token_use(token: ApiToken, ip: str | None) -> None:
    """Record last use; written at most once a minute per token to spare the database."""
    now = timezone.now()
    stale = token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60
    if stale or token.last_used_ip != ip:
        try:
            with transaction.atomic():
                ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=ip)
        except DatabaseError as exc:  # a full disk must not stop reads: this is a note
            logger.warning("token %s: last use not recorded: %s", token.prefix, exc)
            return
        token.last_used_at, token.last_used_ip = now, ip
