from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from llmproxy.api.base import ScopedDetailApi, ScopedListApi
from llmproxy.api.fields import ModelNamesField
from llmproxy.api.pagination import Pages
from llmproxy.api.scoping import ADMIN, TENANT_ADMIN
from tenants.models import Tenant

FIELDS = (
    "slug",
    "name",
    "is_active",
    "allowed_models",
    "cache_ttl_seconds",
    "cache_skip_nondeterministic",
    "store_prompts",
    "retention_days",
    "redis_down_policy",
)
# The slug names the tenant in commands and metrics; activation is the platform's decision.
PLATFORM_ONLY_FIELDS = ("slug", "is_active")


class TenantOutput(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ("id", *FIELDS, "created_at", "updated_at")
        read_only_fields = fields


class TenantInput(serializers.ModelSerializer):
    allowed_models = ModelNamesField()
    retention_days = serializers.IntegerField(min_value=1, max_value=36500, required=False)

    class Meta:
        model = Tenant
        fields = FIELDS


class TenantListApi(ScopedListApi):
    model = Tenant
    pagination_class = Pages
    write_roles = (ADMIN,)
    ordering = ("slug",)
    audited_fields = FIELDS

    class OutputSerializer(TenantOutput):
        pass

    class InputSerializer(TenantInput):
        pass


class TenantDetailApi(ScopedDetailApi):
    model = Tenant
    read_roles = (ADMIN, TENANT_ADMIN)
    audited_fields = FIELDS

    class OutputSerializer(TenantOutput):
        pass

    class InputSerializer(TenantInput):
        pass

    def check_change(self, tenant, values):
        forbidden = [f for f in PLATFORM_ONLY_FIELDS if f in values]
        if forbidden and not self.is_platform_admin:
            raise PermissionDenied(f"Only a platform admin can change {', '.join(forbidden)}.")

    def check_delete(self, tenant):
        if not self.is_platform_admin:
            raise PermissionDenied("Only a platform admin can delete a tenant.")
