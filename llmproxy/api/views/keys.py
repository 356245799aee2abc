from datetime import timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from keys.models import ApiKey
from keys.services import api_key_create, api_key_revoke, api_key_rotate
from llmproxy.api.base import ScopedApi, ScopedDetailApi, ScopedRelatedField
from llmproxy.api.exceptions import Conflict
from llmproxy.api.fields import ModelNamesField
from llmproxy.api.pagination import Pages
from llmproxy.api.scoping import ADMIN, TENANT_ADMIN, USER
from llmproxy.durations import parse_duration
from tenants.models import Tenant, User

ALL_ROLES = (ADMIN, TENANT_ADMIN, USER)
EDITABLE = ("name", "user", "allowed_models", "expires_at")
MAX_GRACE = timedelta(days=365)


class KeyOutput(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = (
            "id",
            "prefix",
            "name",
            "tenant",
            "user",
            "allowed_models",
            "status",
            "expires_at",
            "revoked_at",
            "rotated_at",
            "previous_valid_until",
            "last_used_at",
            "created_at",
        )
        read_only_fields = fields

    def get_status(self, obj) -> str:
        if obj.is_revoked:
            return "revoked"
        return "expired" if obj.is_expired() else "active"


class IssuedKeyOutput(KeyOutput):
    key = serializers.CharField(read_only=True, help_text="The whole key. Shown this once, never stored.")

    class Meta(KeyOutput.Meta):
        fields = (*KeyOutput.Meta.fields, "key")
        read_only_fields = fields


def _check_user_tenant(user, tenant):
    if user is not None and user.tenant_id != tenant.pk:
        raise ValidationError({"user": "This user belongs to another tenant."})


def _check_future(expires_at):
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Give a time in the future."})


class KeyListApi(ScopedApi):
    model = ApiKey
    pagination_class = Pages
    read_roles = ALL_ROLES
    write_roles = (ADMIN, TENANT_ADMIN)

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=("active", "revoked", "expired"), required=False)

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        tenant = ScopedRelatedField(Tenant, required=False, help_text="Default: your own tenant.")
        user = ScopedRelatedField(User, required=False, allow_null=True, default=None)
        allowed_models = ModelNamesField(help_text="Public model names this key may use; empty means all.")
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    class OutputSerializer(KeyOutput):
        pass

    class IssuedSerializer(IssuedKeyOutput):
        pass

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        keys = self.get_queryset().order_by("-created_at", "-id")
        now = timezone.now()
        match filters.validated_data.get("status"):
            case "active":
                keys = keys.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
            case "revoked":
                keys = keys.filter(revoked_at__isnull=False)
            case "expired":
                keys = keys.filter(revoked_at__isnull=True, expires_at__lte=now)
        return self.paginated(keys, self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: IssuedSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        values = data.validated_data
        tenant = values.get("tenant") if self.is_platform_admin else request.user.tenant
        if tenant is None:
            raise ValidationError({"tenant": "A platform admin names the key's tenant."})
        _check_user_tenant(values["user"], tenant)
        _check_future(values["expires_at"])
        api_key, plain = api_key_create(
            tenant=tenant,
            name=values["name"],
            user=values["user"],
            allowed_models=values.get("allowed_models", []),
            expires_at=values["expires_at"],
            actor=request.user,
        )
        api_key.key = plain
        return Response(self.IssuedSerializer(api_key).data, status=status.HTTP_201_CREATED)


class KeyDetailApi(ScopedDetailApi):
    model = ApiKey
    read_roles = ALL_ROLES
    write_roles = (ADMIN, TENANT_ADMIN)
    # No DELETE: a key is revoked (KeyRevokeApi). The fields a PATCH takes are
    # checked by the serializer and check_change(), not by full_clean().
    http_method_names = ("get", "patch", "head", "options")
    audited_fields = EDITABLE
    full_clean_before_save = False

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False, allow_blank=True)
        user = ScopedRelatedField(User, required=False, allow_null=True)
        allowed_models = ModelNamesField()
        expires_at = serializers.DateTimeField(required=False, allow_null=True)

    class OutputSerializer(KeyOutput):
        pass

    def check_change(self, api_key, values):
        if "user" in values:
            _check_user_tenant(values["user"], api_key.tenant)
        if values.get("expires_at") is not None:
            _check_future(values["expires_at"])

    def locked(self, api_key):
        # With its tenant, which the audit row names.
        return ApiKey.objects.select_for_update().select_related("tenant").get(pk=api_key.pk)


class KeyRotateApi(ScopedApi):
    """A new secret for the key (same prefix); the old one keeps working for the grace period."""

    model = ApiKey
    read_roles = ALL_ROLES

    class InputSerializer(serializers.Serializer):
        grace = serializers.CharField(
            required=False,
            default="24h",
            max_length=16,
            help_text="How long the old secret keeps working, like 0s, 15m, 24h or 7d (at most 365d).",
        )

        def validate_grace(self, value):
            try:
                grace = parse_duration(value)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc))
            if grace > MAX_GRACE:
                raise serializers.ValidationError("At most 365d.")
            return grace

    class OutputSerializer(IssuedKeyOutput):
        pass

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, pk):
        api_key = self.get_changeable_object()
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        if api_key.is_revoked or api_key.is_expired():
            raise Conflict("A revoked or expired key cannot be rotated.", code="key_not_usable")
        plain = api_key_rotate(api_key=api_key, grace=data.validated_data["grace"], actor=request.user)
        api_key.refresh_from_db()
        api_key.key = plain
        return Response(self.OutputSerializer(api_key).data)


class KeyRevokeApi(ScopedApi):
    """Revoke the key at once, both secrets. Revoking a revoked key changes nothing."""

    model = ApiKey
    read_roles = ALL_ROLES

    class OutputSerializer(KeyOutput):
        pass

    @extend_schema(request=None, responses=OutputSerializer)
    def post(self, request, pk):
        api_key = self.get_changeable_object()
        api_key_revoke(api_key=api_key, actor=request.user)
        api_key.refresh_from_db()
        return Response(self.OutputSerializer(api_key).data)
