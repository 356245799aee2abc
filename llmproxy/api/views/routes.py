from decimal import Decimal

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from llmproxy.api.base import ScopedApi, ScopedRelatedField, changes, snapshot
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


class ModelRouteListApi(ScopedApi):
    model = ModelRoute
    pagination_class = Pages

    class OutputSerializer(RouteOutput):
        pass

    class InputSerializer(RouteInput):
        pass

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        routes = self.get_queryset().order_by("model", "priority", "-weight", "id")
        return self.paginated(routes, self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        if not self.is_platform_admin:
            if "tenant" in values and values["tenant"] is None:
                raise PermissionDenied("Only a platform admin can create shared routes.")
            values["tenant"] = request.user.tenant
        with transaction.atomic():
            route = ModelRoute(**values)
            route.full_clean()
            route.save()
            self.audit("create", route, changes({}, snapshot(route, FIELDS)))
        return Response(self.OutputSerializer(route).data, status=status.HTTP_201_CREATED)


class ModelRouteDetailApi(ScopedApi):
    model = ModelRoute

    class OutputSerializer(RouteOutput):
        pass

    class InputSerializer(RouteInput):
        pass

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk):
        return Response(self.OutputSerializer(self.get_object()).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request, pk):
        route = self.get_changeable_object()
        data = self.InputSerializer(data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values.get("tenant", route.tenant) != route.tenant and not self.is_platform_admin:
            raise PermissionDenied("Only a platform admin can move a route.")
        with transaction.atomic():
            route = ModelRoute.objects.select_for_update().get(pk=route.pk)
            before = snapshot(route, FIELDS)
            for field, value in values.items():
                setattr(route, field, value)
            route.full_clean()
            changed = changes(before, snapshot(route, FIELDS))
            if changed:
                route.save()
                self.audit("update", route, changed)
        return Response(self.OutputSerializer(route).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        route = self.get_changeable_object()
        with transaction.atomic():
            self.audit("delete", route, {})
            route.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
