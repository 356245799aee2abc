from decimal import Decimal

from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from llmproxy.api.base import ScopedDetailApi, ScopedListApi, ScopedRelatedField
from llmproxy.api.pagination import Pages
from providers.models import ModelRoute, Provider
from tenants.models import Tenant

FIELDS = (
    "model",
    "provider",
    "upstream_model",
    "priority",
    "weight",
    "input_price",
    "output_price",
    "is_active",
    "tenant",
)
MAX_WHOLE = 2**31 - 1


class RouteOutput(serializers.ModelSerializer):
    class Meta:
        model = ModelRoute
        fields = ("id", *FIELDS, "created_at", "updated_at")
        read_only_fields = fields


class RouteInput(serializers.Serializer):
    model = serializers.CharField(max_length=200, help_text="Public model name clients ask for.")
    provider = ScopedRelatedField(Provider, help_text="Your tenant's provider or a shared one.")
    upstream_model = serializers.CharField(max_length=200)
    priority = serializers.IntegerField(min_value=0, max_value=MAX_WHOLE, required=False)
    weight = serializers.IntegerField(min_value=0, max_value=MAX_WHOLE, required=False)
    input_price = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=Decimal(0),
        required=False,
        help_text="USD per million tokens.",
    )
    output_price = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=Decimal(0),
        required=False,
        help_text="USD per million tokens.",
    )
    is_active = serializers.BooleanField(required=False)
    tenant = ScopedRelatedField(
        Tenant,
        required=False,
        allow_null=True,
        help_text="Empty: shared by all tenants (platform admins only). "
        "Default for a tenant admin: their tenant.",
    )


class ModelRouteListApi(ScopedListApi):
    model = ModelRoute
    pagination_class = Pages
    ordering = ("model", "priority", "-weight", "id")
    audited_fields = FIELDS

    class OutputSerializer(RouteOutput):
        pass

    class InputSerializer(RouteInput):
        pass

    def check_create(self, values):
        self.own_tenant_unless_shared(values, "routes")


class ModelRouteDetailApi(ScopedDetailApi):
    model = ModelRoute
    audited_fields = FIELDS

    class OutputSerializer(RouteOutput):
        pass

    class InputSerializer(RouteInput):
        pass

    def check_change(self, route, values):
        if values.get("tenant", route.tenant) != route.tenant and not self.is_platform_admin:
            raise PermissionDenied("Only a platform admin can move a route.")
