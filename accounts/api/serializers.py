from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    RegistrationCode,
    Role,
    Scope,
    User,
    UserSession,
)


class UserSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "display_name"]
        read_only_fields = fields


class MembershipOfMeSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    organization_name = serializers.CharField(source="organization.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["organization", "organization_name", "role"]
        read_only_fields = fields


class MeSerializer(serializers.ModelSerializer):
    memberships = serializers.SerializerMethodField()

    def validate(self, attrs):
        if "password" in getattr(self, "initial_data", {}):
            raise serializers.ValidationError(
                {"password": "Change it at /api/v1/me/password/ (your current one is needed)."}
            )
        return attrs

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "display_name",
            "is_staff",
            "last_login",
            "date_joined",
            "memberships",
        ]
        read_only_fields = ["id", "email", "is_staff", "last_login", "date_joined"]

    @extend_schema_field(MembershipOfMeSerializer(many=True))
    def get_memberships(self, user: User):
        qs = user.memberships.filter(organization__is_active=True).select_related("organization")
        return MembershipOfMeSerializer(qs, many=True).data


class OrganizationSerializer(serializers.ModelSerializer):
    slug = serializers.SlugField(max_length=50, required=False)
    role = serializers.SerializerMethodField(help_text="The caller's role here.")

    class Meta:
        model = Organization
        fields = [
            "id",
            "name",
            "slug",
            "is_personal",
            "terminal_access",
            "role",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "is_personal", "role", "created_at", "updated_at"]

    def get_role(self, org: Organization) -> str | None:
        return getattr(org, "caller_role", None)


class MemberSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True)
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "created_at", "updated_at"]
        read_only_fields = ["id", "user", "created_at", "updated_at"]


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.SlugRelatedField(slug_field="email", read_only=True)
    status = serializers.CharField(read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
    expires_at = serializers.DateTimeField(required=False)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "invited_by",
            "expires_at",
            "accepted_at",
            "revoked_at",
            "created_at",
        ]
        read_only_fields = ["id", "status", "invited_by", "accepted_at", "revoked_at", "created_at"]


class InvitationCreatedSerializer(InvitationSerializer):
    code = serializers.CharField(read_only=True, help_text="Shown once; send it to the invitee.")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "code"]


class AcceptedInvitationSerializer(serializers.ModelSerializer):
    organization = OrganizationSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "organization", "role"]
        read_only_fields = fields


class ApiTokenSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Organization.objects.all(),
        required=False,
        allow_null=True,
        help_text="Restrict the token to this organization.",
    )
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False
    )
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "organization",
            "expires_at",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
            "is_active",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "prefix",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
            "is_active",
            "created_at",
        ]

    def validate_organization(self, org: Organization | None) -> Organization | None:
        # The choice list is every organization; answer outsiders as if it did not exist.
        request = self.context["request"]
        if (
            org is not None
            and not Organization.objects.for_user(request.user).filter(pk=org.pk).exists()
        ):
            self.fields["organization"].fail("does_not_exist", slug_name="slug", value=org.slug)
        return org


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; store it now.")
    otp_code = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=32,
        help_text="A current code of your authenticator; required when two-factor sign-in is on.",
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token", "otp_code"]


class RegistrationCodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = RegistrationCode
        fields = ["id", "valid_until", "created_at"]
        read_only_fields = fields


class RegistrationCodeCreatedSerializer(RegistrationCodeSerializer):
    code = serializers.CharField(read_only=True, help_text="Shown once; valid 30 minutes.")

    class Meta(RegistrationCodeSerializer.Meta):
        fields = [*RegistrationCodeSerializer.Meta.fields, "code"]


class RegisterSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=32)
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    display_name = serializers.CharField(max_length=150, required=False, allow_blank=True)


class PasswordChangeSerializer(serializers.Serializer):
    current_password = serializers.CharField(trim_whitespace=False, write_only=True)
    new_password = serializers.CharField(trim_whitespace=False, write_only=True, max_length=128)


class InvitationRegisterSerializer(serializers.Serializer):
    password = serializers.CharField(trim_whitespace=False, write_only=True, max_length=128)
    display_name = serializers.CharField(max_length=150, required=False, allow_blank=True)


class PasswordProofSerializer(serializers.Serializer):
    password = serializers.CharField(trim_whitespace=False, write_only=True, max_length=128)


class SecondFactorCodeSerializer(serializers.Serializer):
    code = serializers.CharField(
        max_length=32,
        write_only=True,
        help_text="6 digits of the authenticator (or, where said, a recovery code).",
    )


class TwoFactorDisableSerializer(PasswordProofSerializer, SecondFactorCodeSerializer):
    pass


class TwoFactorStatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    pending = serializers.BooleanField(help_text="A secret was issued but not confirmed yet.")
    required = serializers.BooleanField(help_text="Staff must have it on (a setting says so).")
    confirmed_at = serializers.DateTimeField(allow_null=True)
    recovery_codes_left = serializers.IntegerField()


class TwoFactorSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="Base32 secret for the authenticator app.")
    otpauth_uri = serializers.CharField(help_text="The same as an otpauth:// URI.")
    qr_code = serializers.CharField(help_text="That URI as a QR code: an SVG data: URI.")


class RecoveryCodesSerializer(serializers.Serializer):
    recovery_codes = serializers.ListField(
        child=serializers.CharField(), help_text="Shown once; each works one time."
    )


class UserSessionSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    current = serializers.SerializerMethodField()

    class Meta:
        model = UserSession
        fields = [
            "id",
            "created_at",
            "last_seen_at",
            "ip",
            "user_agent",
            "second_factor",
            "current",
        ]
        read_only_fields = fields

    def get_current(self, row: UserSession) -> bool:
        return str(row.public_id) == self.context.get("current_session")
