"""Staff admin for accounts. Every write goes through accounts.services, so it is audited
(the routing of admin writes through services is `hostpanel.admin_kit`)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import SetPasswordMixin, UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from accounts import services
from accounts.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    RegistrationCode,
    User,
)
from hostpanel.admin_kit import (
    ReadOnlyInline,
    ReadOnlyServiceAdmin,
    ServiceModelAdmin,
)

admin.site.site_header = "hostpanel"
admin.site.site_title = "hostpanel admin"


# --- users --------------------------------------------------------------------------------


class UserAddForm(SetPasswordMixin, forms.ModelForm):
    password1, password2 = SetPasswordMixin.create_password_fields()

    class Meta:
        model = User
        fields = ("email", "display_name")

    def clean(self):
        self.validate_passwords()
        return super().clean()

    def _post_clean(self):
        super()._post_clean()
        # The instance now holds the email and name the similarity validator compares with.
        self.validate_password_for_user(self.instance)


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = ("email", "password", "display_name", "is_active", "is_staff", "is_superuser")


class AdminSetPasswordForm(SetPasswordMixin, forms.Form):
    password1, password2 = SetPasswordMixin.create_password_fields()

    def __init__(self, user, *args, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean(self):
        self.validate_passwords()
        self.validate_password_for_user(self.user)
        return super().clean()


class UserMembershipInline(ReadOnlyInline):
    model = Membership
    fk_name = "user"
    fields = ("organization", "role", "created_at")
    readonly_fields = fields
    verbose_name_plural = "memberships (change them in Memberships)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("organization")


@admin.register(User)
class UserAdmin(ServiceModelAdmin, BaseUserAdmin):
    add_form_template = None
    form = UserEditForm
    add_form = UserAddForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("display_name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "description": "The new user gets a personal organization that they own.",
                "fields": ("email", "display_name", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")
    list_display = ("email", "display_name", "is_active", "is_staff", "last_login", "date_joined")
    list_filter = ("is_active", "is_staff")
    search_fields = ("email", "display_name")
    ordering = ("email",)
    filter_horizontal = ()
    inlines = (UserMembershipInline,)
    actions = ("deactivate_users", "reactivate_users")

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False  # users are deactivated, never deleted

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with self.service_call():
            if not change:
                user = services.create_user(
                    actor=request.user,
                    email=data["email"],
                    display_name=data["display_name"],
                    password=data["password1"],
                )
                obj.pk = user.pk  # the admin goes on with the form's instance: point it here
            else:
                editable = ("email", "display_name", "is_active", "is_staff", "is_superuser")
                changed = {name: data[name] for name in form.changed_data if name in editable}
                # The form has already written its values onto obj; the service needs the
                # stored row to compute the before/after of its audit entry.
                services.update_user(User.objects.get(pk=obj.pk), actor=request.user, **changed)
        obj.refresh_from_db()

    @method_decorator(sensitive_post_parameters())
    def user_change_password(self, request, id, form_url=""):
        user = self.get_object(request, unquote(id))
        if user is None:
            raise Http404("No such user.")
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        change_url = reverse(f"{self.admin_site.name}:accounts_user_change", args=[user.pk])
        if "unset-password" in request.POST:
            self.message_user(
                request,
                "Password sign-in cannot be disabled here; deactivate the user instead.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
        if request.method == "POST":
            form = AdminSetPasswordForm(user, request.POST)
        else:
            form = AdminSetPasswordForm(user)
        if form.is_bound and form.is_valid():
            try:
                services.set_password(user, form.cleaned_data["password1"], actor=request.user)
            except ValidationError as exc:
                form.add_error("password2", exc.message_dict.get("password", exc.messages))
            else:
                self.log_change(request, user, [{"changed": {"fields": ["password"]}}])
                update_session_auth_hash(request, user)  # keeps staff signed in if it is them
                self.message_user(request, "Password changed.", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Change password: {user.email}",
            "adminForm": admin.helpers.AdminForm(
                form, [(None, {"fields": list(form.base_fields)})], {}
            ),
            "form_url": form_url,
            "form": form,
            "is_popup": IS_POPUP_VAR in request.POST or IS_POPUP_VAR in request.GET,
            "is_popup_var": IS_POPUP_VAR,
            "add": True,
            "change": False,
            "has_delete_permission": False,
            "has_change_permission": True,
            "has_absolute_url": False,
            "opts": self.opts,
            "original": user,
            "save_as": False,
            "show_save": True,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/auth/user/change_password.html", context)

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_users(self, request, queryset):
        if queryset.filter(pk=request.user.pk).exists():
            self.message_user(request, "You cannot deactivate yourself.", messages.WARNING)
        self.run_each(
            request,
            queryset.filter(is_active=True).exclude(pk=request.user.pk),
            lambda user: services.update_user(user, actor=request.user, is_active=False),
            "Deactivated {count} user(s).",
        )

    @admin.action(description="Reactivate selected users", permissions=["change"])
    def reactivate_users(self, request, queryset):
        self.run_each(
            request,
            queryset.filter(is_active=False),
            lambda user: services.update_user(user, actor=request.user, is_active=True),
            "Reactivated {count} user(s).",
        )


# --- organizations ------------------------------------------------------------------------


class OrganizationMemberInline(ReadOnlyInline):
    model = Membership
    fk_name = "organization"
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    verbose_name_plural = "members (change them in Memberships)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


class OrganizationAddForm(forms.ModelForm):
    slug = forms.SlugField(
        max_length=50, required=False, help_text="Leave empty to derive it from the name."
    )

    class Meta:
        model = Organization
        fields = ("name", "slug")


@admin.register(Organization)
class OrganizationAdmin(ServiceModelAdmin):
    list_display = ("name", "slug", "is_personal", "is_active", "member_count", "created_at")
    list_filter = ("is_active", "is_personal")
    search_fields = ("name", "slug")
    ordering = ("name",)
    inlines = (OrganizationMemberInline,)
    actions = ("deactivate_organizations", "reactivate_organizations")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj):
        return obj.member_count

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            description = (
                "You become the owner of an organization you create here; add the real "
                "owner under Memberships, then remove yourself if you wish."
            )
            return ((None, {"description": description, "fields": ("name", "slug")}),)
        return (
            (None, {"fields": ("name", "slug", "is_active")}),
            ("Details", {"fields": ("is_personal", "created_at", "updated_at")}),
        )

    def get_readonly_fields(self, request, obj=None):
        return ("is_personal", "created_at", "updated_at") if obj is not None else ()

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = OrganizationAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False  # organizations are deactivated, never deleted

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with self.service_call():
            if not change:
                org = services.create_organization(
                    actor=request.user, name=data["name"], slug=data["slug"] or ""
                )
                obj.pk = org.pk
            else:
                org = Organization.objects.get(pk=obj.pk)
                changed = {
                    name: data[name] for name in ("name", "slug") if name in form.changed_data
                }
                if changed:
                    services.update_organization(org, actor=request.user, **changed)
                if "is_active" in form.changed_data:
                    services.set_organization_active(
                        org, active=data["is_active"], actor=request.user
                    )
        obj.refresh_from_db()

    @admin.action(description="Deactivate selected organizations", permissions=["change"])
    def deactivate_organizations(self, request, queryset):
        self.run_each(
            request,
            queryset.filter(is_active=True),
            lambda org: services.set_organization_active(org, active=False, actor=request.user),
            "Deactivated {count} organization(s).",
        )

    @admin.action(description="Reactivate selected organizations", permissions=["change"])
    def reactivate_organizations(self, request, queryset):
        self.run_each(
            request,
            queryset.filter(is_active=False),
            lambda org: services.set_organization_active(org, active=True, actor=request.user),
            "Reactivated {count} organization(s).",
        )


# --- memberships --------------------------------------------------------------------------


@admin.register(Membership)
class MembershipAdmin(ServiceModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organization__slug", "organization__name")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user", "organization")
    actions = ("remove_members",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "organization", "role")
        return ("user", "organization", "role", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("user", "organization", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with self.service_call():
            if not change:
                membership = services.add_member(
                    data["organization"], data["user"], data["role"], actor=request.user
                )
                obj.pk = membership.pk
            elif "role" in form.changed_data:
                services.change_role(
                    Membership.objects.get(pk=obj.pk), data["role"], actor=request.user
                )
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        with self.service_call():
            services.remove_member(obj, actor=request.user)

    @admin.action(description="Remove selected members", permissions=["delete"])
    def remove_members(self, request, queryset):
        self.run_each(
            request,
            queryset.select_related("user", "organization"),
            lambda membership: services.remove_member(membership, actor=request.user),
            "Removed {count} member(s).",
        )


# --- invitations --------------------------------------------------------------------------


class InvitationStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(s, s.capitalize()) for s in ("pending", "accepted", "revoked", "expired")]

    def queryset(self, request, queryset):
        match self.value():
            case "pending":
                return queryset.pending()
            case "accepted":
                return queryset.filter(accepted_at__isnull=False)
            case "revoked":
                return queryset.filter(accepted_at__isnull=True, revoked_at__isnull=False)
            case "expired":
                return queryset.filter(
                    accepted_at__isnull=True,
                    revoked_at__isnull=True,
                    expires_at__lte=timezone.now(),
                )
        return queryset


class ReadOnlyModelAdmin(ReadOnlyServiceAdmin):
    """Rows created elsewhere (the API): staff may look and use the actions, not edit."""

    def has_revoke_permission(self, request):
        """Revoking changes the row, so it needs the model's change permission."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyModelAdmin):
    list_display = ("email", "organization", "role", "status", "invited_by", "expires_at")
    list_filter = (InvitationStatusFilter, "role")
    search_fields = ("email", "organization__slug", "organization__name")
    list_select_related = ("organization", "invited_by")
    fields = (
        "email",
        "organization",
        "role",
        "status",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    )
    readonly_fields = fields
    exclude = ("code_hash",)
    actions = ("revoke_invitations",)

    @admin.display(description="status")
    def status(self, obj):
        return obj.status

    @admin.action(description="Revoke selected invitations", permissions=["revoke"])
    def revoke_invitations(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda invitation: services.revoke_invitation(invitation, actor=request.user),
            "Revoked {count} invitation(s).",
        )


# --- registration codes -------------------------------------------------------------------


@admin.register(RegistrationCode)
class RegistrationCodeAdmin(ReadOnlyModelAdmin):
    """Codes are listed without their hash. "Add" generates the staff member's own code."""

    list_display = ("created_by", "created_at", "valid_until", "is_valid")
    search_fields = ("created_by__email",)
    list_select_related = ("created_by",)
    ordering = ("-created_at",)
    actions = None

    def has_add_permission(self, request):
        return request.user.has_perm("accounts.add_registrationcode")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("about",)
        return ("created_by", "created_at", "valid_until", "is_valid")

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="")
    def about(self, obj):
        return (
            "Saving generates your registration code, valid for 30 minutes and usable once. "
            "It replaces any earlier code of yours and is shown only once."
        )

    @admin.display(description="valid", boolean=True)
    def is_valid(self, obj):
        return obj.is_valid

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "title": "Generate my registration code",
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
        }
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        with self.service_call():
            registration_code, code = services.create_registration_code(actor=request.user)
        obj.pk = registration_code.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"Your registration code is {code} — valid until "
            f"{registration_code.valid_until:%H:%M} UTC. It will not be shown again.",
            messages.SUCCESS,
        )


# --- API tokens ---------------------------------------------------------------------------


class TokenStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        match self.value():
            case "active":
                return queryset.active()
            case "revoked":
                return queryset.filter(revoked_at__isnull=False)
            case "expired":
                return queryset.filter(revoked_at__isnull=True, expires_at__lte=timezone.now())
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyModelAdmin):
    """Tokens are made in the API, where the full value is shown once. The hash never shows."""

    list_display = (
        "name",
        "prefix",
        "user",
        "organization",
        "scopes",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (TokenStatusFilter,)
    search_fields = ("name", "prefix", "user__email", "organization__slug")
    list_select_related = ("user", "organization")
    fields = (
        "name",
        "prefix",
        "user",
        "organization",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "revoked_at",
    )
    readonly_fields = fields
    exclude = ("key_hash",)
    actions = ("revoke_tokens",)

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request, queryset):
        self.run_each(
            request,
            queryset,
            lambda token: services.revoke_api_token(token, actor=request.user),
            "Revoked {count} token(s).",
        )


# Roles live in memberships; Django's groups are unused, and editing them here would bypass
# the services and the audit trail.
admin.site.unregister(Group)
