from django.core.exceptions import ValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from llmproxy.api.base import ScopedApi, ScopedRelatedField, changes, snapshot
from llmproxy.api.fields import FiniteFloatField, JSONObjectField
from llmproxy.api.pagination import Pages
from providers.models import Provider
from tenants.models import Tenant

FIELDS = (
    "name",
    "kind",
    "base_url",
    "tenant",
    "is_active",
    "api_key_env",
    "api_version",
    "timeout_seconds",
    "connect_timeout_seconds",
    "extra_headers",
    "options",
)
# encrypted_api_key is audited as changed or not, never with its value (base.SECRET_FIELDS).
AUDITED = (*FIELDS, "encrypted_api_key")


class ProviderOutput(serializers.ModelSerializer):
    has_api_key = serializers.SerializerMethodField(help_text="Whether a credential is stored (never shown).")

    class Meta:
        model = Provider
        fields = ("id", *FIELDS, "has_api_key", "created_at", "updated_at")
        read_only_fields = fields

    def get_has_api_key(self, obj) -> bool:
        return bool(obj.encrypted_api_key)


class ProviderInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=Provider.Kind.choices)
    base_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    tenant = ScopedRelatedField(
        Tenant,
        required=False,
        allow_null=True,
        help_text="Empty: shared by all tenants (platform admins only). "
        "Default for a tenant admin: their tenant.",
    )
    is_active = serializers.BooleanField(required=False)
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=4096,
        style={"input_type": "password"},
        help_text="Stored encrypted, never returned. An empty string removes the stored one.",
    )
    api_key_env = serializers.RegexField(
        r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100, required=False, allow_blank=True
    )
    api_version = serializers.CharField(max_length=40, required=False, allow_blank=True)
    timeout_seconds = FiniteFloatField(min_value=0.1, max_value=3600, required=False)
    connect_timeout_seconds = FiniteFloatField(min_value=0.1, max_value=600, required=False)
    extra_headers = JSONObjectField(string_values=True)
    options = JSONObjectField()


def _apply(provider, values):
    for field, value in values.items():
        if field == "api_key":
            provider.set_api_key(value)
        else:
            setattr(provider, field, value)


class ProviderListApi(ScopedApi):
    model = Provider
    pagination_class = Pages

    class OutputSerializer(ProviderOutput):
        pass

    class InputSerializer(ProviderInput):
        pass

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        providers = self.get_queryset().order_by("name", "id")
        return self.paginated(providers, self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        if not self.is_platform_admin:
            if "tenant" in values and values["tenant"] is None:
                raise PermissionDenied("Only a platform admin can create shared providers.")
            values["tenant"] = request.user.tenant
        with transaction.atomic():
            provider = Provider()
            _apply(provider, values)
            provider.full_clean()
            provider.save()
            self.audit("create", provider, changes({}, snapshot(provider, AUDITED)))
        return Response(self.OutputSerializer(provider).data, status=status.HTTP_201_CREATED)


class ProviderDetailApi(ScopedApi):
    model = Provider

    class OutputSerializer(ProviderOutput):
        pass

    class InputSerializer(ProviderInput):
        pass

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk):
        return Response(self.OutputSerializer(self.get_object()).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request, pk):
        provider = self.get_changeable_object()
        data = self.InputSerializer(data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        moving = values.get("tenant", provider.tenant) != provider.tenant
        if moving and not self.is_platform_admin:
            raise PermissionDenied("Only a platform admin can move a provider.")
        if moving and provider.routes.exists():
            raise ValidationError({"tenant": "Routes use this provider: move or delete them first."})
        with transaction.atomic():
            provider = Provider.objects.select_for_update().get(pk=provider.pk)
            before = snapshot(provider, AUDITED)
            _apply(provider, values)
            provider.full_clean()
            changed = changes(before, snapshot(provider, AUDITED))
            if changed:
                provider.save()
                self.audit("update", provider, changed)
        return Response(self.OutputSerializer(provider).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        provider = self.get_changeable_object()
        with transaction.atomic():
            self.audit("delete", provider, {})
            provider.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
