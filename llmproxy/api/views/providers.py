from django.core.exceptions import ValidationError
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from llmproxy.api.base import ScopedDetailApi, ScopedListApi, ScopedRelatedField
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


class ProviderListApi(ScopedListApi):
    model = Provider
    pagination_class = Pages
    ordering = ("name", "id")
    audited_fields = AUDITED

    class OutputSerializer(ProviderOutput):
        pass

    class InputSerializer(ProviderInput):
        pass

    def check_create(self, values):
        self.own_tenant_unless_shared(values, "providers")

    def apply_change(self, provider, values):
        _apply(provider, values)


class ProviderDetailApi(ScopedDetailApi):
    model = Provider
    audited_fields = AUDITED

    class OutputSerializer(ProviderOutput):
        pass

    class InputSerializer(ProviderInput):
        pass

    def check_change(self, provider, values):
        moving = values.get("tenant", provider.tenant) != provider.tenant
        if moving and not self.is_platform_admin:
            raise PermissionDenied("Only a platform admin can move a provider.")
        if moving and provider.routes.exists():
            raise ValidationError({"tenant": "Routes use this provider: move or delete them first."})

    def apply_change(self, provider, values):
        _apply(provider, values)
