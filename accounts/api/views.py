"""Accounts endpoints. Views stay thin: every change is a call into accounts.services."""

from __future__ import annotations

from django.contrib.auth import login, update_session_auth_hash
from django.db.models import F
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services, sessions, two_factor
from accounts.api import serializers as s
from accounts.api.filters import (
    ApiTokenFilterSet,
    InvitationFilterSet,
    MembershipFilterSet,
    OrganizationFilterSet,
)
from accounts.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    RegistrationCode,
    Role,
    TwoFactorDevice,
    UserSession,
    role_at_least,
)
from hostpanel.api.permissions import IsStaff, request_token
from hostpanel.api.throttling import RegisterThrottle
from hostpanel.api.viewsets import OrganizationScopedViewSet


class MeView(generics.RetrieveUpdateAPIView):
    """The signed-in user and their organizations."""

    serializer_class = s.MeSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        return self.request.user

    def perform_update(self, serializer):
        services.update_user(
            self.request.user, actor=self.request.user, **serializer.validated_data
        )


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your API tokens. The full value is returned once, by create; DELETE revokes."""

    queryset = ApiToken.objects.all()
    serializer_class = s.ApiTokenSerializer
    filterset_class = ApiTokenFilterSet
    ordering_fields = ["created_at", "name", "last_used_at", "expires_at"]
    # A leaked token must not be able to mint more tokens.
    session_only_actions = ("create",)

    def get_queryset(self):
        qs = self.queryset.for_user(self.request.user).select_related("organization")
        token = request_token(self.request)
        return qs.filter(pk=token.pk) if token is not None else qs

    def get_serializer_class(self):
        return (
            s.ApiTokenCreatedSerializer
            if self.action == "create"
            else super().get_serializer_class()
        )

    @extend_schema(responses={201: s.ApiTokenCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, raw = services.create_api_token(actor=request.user, **serializer.validated_data)
        data = s.ApiTokenCreatedSerializer(token, context=self.get_serializer_context()).data
        data["token"] = raw
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.revoke_api_token(instance, actor=self.request.user)


class OrganizationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Organizations you belong to. DELETE deactivates (owners only); rows are kept."""

    queryset = Organization.objects.all()
    serializer_class = s.OrganizationSerializer
    filterset_class = OrganizationFilterSet
    lookup_field = "slug"
    lookup_url_kwarg = "org_slug"
    ordering_fields = ["name", "slug", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    # The one action -> role map of this viewset (services keep invariants only).
    minimum_roles = {"partial_update": Role.ADMIN, "destroy": Role.OWNER}

    def get_queryset(self):
        # F() reuses the membership join `for_user` filtered on the caller: their own role.
        return self.queryset.for_user(self.request.user, request_token(self.request)).annotate(
            caller_role=F("memberships__role")
        )

    def get_object(self):
        org = super().get_object()
        minimum = self.minimum_roles.get(self.action)
        if minimum and not role_at_least(org.caller_role, minimum):
            raise PermissionDenied(
                f"This needs the {minimum} role in {org.slug}; you are {org.caller_role}."
            )
        return org

    def create(self, request, *args, **kwargs):
        token = request_token(request)
        if token is not None and token.organization_id is not None:
            self.permission_denied(
                request, message="A token restricted to one organization cannot create another."
            )
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        org = services.create_organization(actor=request.user, **serializer.validated_data)
        org.caller_role = Role.OWNER
        return Response(self.get_serializer(org).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        services.update_organization(
            serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.set_organization_active(instance, active=False, actor=self.request.user)


class MemberViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrganizationScopedViewSet,
):
    """Members and roles. New members join through invitations. Anyone may leave."""

    queryset = Membership.objects.select_related("user", "organization")
    serializer_class = s.MemberSerializer
    filterset_class = MembershipFilterSet
    ordering_fields = ["created_at", "role", "user__email"]
    http_method_names = ["get", "patch", "delete", "head", "options"]
    # Finer rules (admins up to their own rank, self-removal) live in the service.
    minimum_roles = {"partial_update": Role.ADMIN, "destroy": Role.VIEWER}

    def perform_update(self, serializer):
        if "role" not in serializer.validated_data:
            raise ValidationError({"role": ["This field is required."]})
        services.change_role(
            serializer.instance, serializer.validated_data["role"], actor=self.request.user
        )

    def perform_destroy(self, instance):
        services.remove_member(instance, actor=self.request.user)


class InvitationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    OrganizationScopedViewSet,
):
    """Invitations to this organization (admins). The code is returned once; DELETE revokes."""

    queryset = Invitation.objects.select_related("invited_by")
    serializer_class = s.InvitationSerializer
    filterset_class = InvitationFilterSet
    ordering_fields = ["created_at", "expires_at", "email"]
    minimum_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    @extend_schema(responses={201: s.InvitationCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, code = services.invite(
            self.organization, actor=request.user, **serializer.validated_data
        )
        data = s.InvitationCreatedSerializer(invitation).data
        data["code"] = code
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.revoke_invitation(instance, actor=self.request.user)


class SessionOnlyView(APIView):
    """What only the person at the keyboard may do: a token cannot, even a full one."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request_token(request) is not None:
            raise PermissionDenied("This needs a signed-in session; tokens cannot do it.")


class PasswordChangeView(SessionOnlyView):
    """Change your password (the current one is needed). Your other sessions end; this one
    stays signed in."""

    serializer_class = s.PasswordChangeSerializer

    @extend_schema(request=s.PasswordChangeSerializer, responses={204: None})
    def post(self, request):
        serializer = s.PasswordChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.change_password(
            request.user, keep_session=sessions.current_id(request), **serializer.validated_data
        )
        update_session_auth_hash(request, user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SignOutEverywhereView(SessionOnlyView):
    """End every other session of yours (this one stays signed in). API tokens are not
    touched: revoke them under /tokens/."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        user = services.sign_out_everywhere(request.user, sessions.current_id(request))
        update_session_auth_hash(request, user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionListView(SessionOnlyView, generics.ListAPIView):
    """Your signed-in sessions (browsers), newest activity first; `current` is this one."""

    serializer_class = s.UserSessionSerializer
    queryset = UserSession.objects.none()
    pagination_class = None

    def get_queryset(self):
        return sessions.active_for(self.request.user)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        return {**context, "current_session": sessions.current_id(self.request)}


class SessionRevokeView(SessionOnlyView):
    """Sign one of your sessions out; it ends at its next request (this one too, if named)."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, session_id):
        row = get_object_or_404(sessions.active_for(request.user), public_id=session_id)
        sessions.revoke(request.user, row.public_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TwoFactorView(SessionOnlyView):
    """Two-factor sign-in (TOTP). GET: whether it is on. POST (your password): a new
    authenticator secret, which counts once confirmed at `confirm/`."""

    @extend_schema(responses={200: s.TwoFactorStatusSerializer})
    def get(self, request):
        device = TwoFactorDevice.objects.filter(user=request.user).first()
        enabled = device is not None and device.confirmed_at is not None
        data = {
            "enabled": enabled,
            "pending": device is not None and not enabled,
            "required": two_factor.required_for(request.user),
            "confirmed_at": device.confirmed_at if enabled else None,
            "recovery_codes_left": two_factor.recovery_codes_left(request.user),
        }
        return Response(s.TwoFactorStatusSerializer(data).data)

    @extend_schema(request=s.PasswordProofSerializer, responses={201: s.TwoFactorSecretSerializer})
    def post(self, request):
        serializer = s.PasswordProofSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        secret = two_factor.begin(request.user, **serializer.validated_data)
        uri = two_factor.provisioning_uri(request.user, secret)
        data = {"secret": secret, "otpauth_uri": uri, "qr_code": two_factor.qr_code(uri)}
        return Response(data, status=status.HTTP_201_CREATED)


class TwoFactorConfirmView(SessionOnlyView):
    """Turn two-factor sign-in on with a first code of the app; answers the recovery codes,
    once."""

    @extend_schema(request=s.SecondFactorCodeSerializer, responses={200: s.RecoveryCodesSerializer})
    def post(self, request):
        serializer = s.SecondFactorCodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        codes = two_factor.confirm(request.user, **serializer.validated_data)
        return Response({"recovery_codes": codes})


class TwoFactorDisableView(SessionOnlyView):
    """Turn two-factor sign-in off: your password and a code (or a recovery code)."""

    @extend_schema(request=s.TwoFactorDisableSerializer, responses={204: None})
    def post(self, request):
        serializer = s.TwoFactorDisableSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        two_factor.disable(request.user, **serializer.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecoveryCodesView(SessionOnlyView):
    """New recovery codes for a code of the app; the old ones stop working."""

    @extend_schema(request=s.SecondFactorCodeSerializer, responses={200: s.RecoveryCodesSerializer})
    def post(self, request):
        serializer = s.SecondFactorCodeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        codes = two_factor.renew_recovery_codes(request.user, **serializer.validated_data)
        return Response({"recovery_codes": codes})


class InvitationRegisterView(APIView):
    """Create an account with an invitation alone (no registration code): the account is
    the invited email, the invitation is accepted, and you are signed in."""

    permission_classes = [AllowAny]
    authentication_classes = [SessionAuthentication]
    throttle_classes = [RegisterThrottle]
    serializer_class = s.InvitationRegisterSerializer

    @extend_schema(request=s.InvitationRegisterSerializer, responses={201: s.MeSerializer})
    def post(self, request, code: str):
        serializer = s.InvitationRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, _ = services.register_with_invitation(code=code, **serializer.validated_data)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return Response(s.MeSerializer(user).data, status=status.HTTP_201_CREATED)


class AcceptInvitationView(APIView):
    """Accept an invitation as the invited email; you join with its role."""

    serializer_class = s.AcceptedInvitationSerializer

    @extend_schema(request=None, responses={201: s.AcceptedInvitationSerializer})
    def post(self, request, code: str):
        membership = services.accept_invitation(code, user=request.user)
        membership.organization.caller_role = membership.role
        return Response(
            s.AcceptedInvitationSerializer(membership).data, status=status.HTTP_201_CREATED
        )


class RegistrationCodeView(APIView):
    """Staff: your live registration code (GET) or a new one replacing it (POST)."""

    permission_classes = [IsStaff]
    serializer_class = s.RegistrationCodeSerializer

    @extend_schema(responses={200: s.RegistrationCodeSerializer})
    def get(self, request):
        services.purge_expired_codes()
        code = get_object_or_404(RegistrationCode, created_by=request.user)
        return Response(s.RegistrationCodeSerializer(code).data)

    @extend_schema(request=None, responses={201: s.RegistrationCodeCreatedSerializer})
    def post(self, request):
        code, raw = services.create_registration_code(actor=request.user)
        data = s.RegistrationCodeCreatedSerializer(code).data
        data["code"] = raw
        return Response(data, status=status.HTTP_201_CREATED)


class RegisterView(APIView):
    """Create an account with a registration code from a staff member."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [RegisterThrottle]
    serializer_class = s.RegisterSerializer

    @extend_schema(request=s.RegisterSerializer, responses={201: s.MeSerializer})
    def post(self, request):
        serializer = s.RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.register_with_code(**serializer.validated_data)
        return Response(s.MeSerializer(user).data, status=status.HTTP_201_CREATED)
