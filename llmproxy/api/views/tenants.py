from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from llmproxy.api.base import ScopedApi, changes, snapshot
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


class TenantListApi(ScopedApi):
    model = Tenant
    pagination_class = Pages
    write_roles = (ADMIN,)

    class OutputSerializer(TenantOutput):
        pass

    class InputSerializer(TenantInput):
        pass

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        return self.paginated(self.get_queryset().order_by("slug"), self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            tenant = Tenant(**data.validated_data)
            tenant.full_clean()
            tenant.save()
            self.audit("create", tenant, changes({}, snapshot(tenant, FIELDS)))
        return Response(self.OutputSerializer(tenant).data, status=status.HTTP_201_CREATED)


class TenantDetailApi(ScopedApi):
    model = Tenant
    read_roles = (ADMIN, TENANT_ADMIN)

    class OutputSerializer(TenantOutput):
        pass

    class InputSerializer(TenantInput):
        pass

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk):
        return Response(self.OutputSerializer(self.get_object()).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request, pk):
        tenant = self.get_changeable_object()
        data = self.InputSerializer(tenant, data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        forbidden = [f for f in PLATFORM_ONLY_FIELDS if f in data.validated_data]
        if forbidden and not self.is_platform_admin:
            raise PermissionDenied(f"Only a platform admin can change {', '.join(forbidden)}.")
        with transaction.atomic():
            tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
            before = snapshot(tenant, FIELDS)
            for field, value in data.validated_data.items():
                setattr(tenant, field, value)
            tenant.full_clean()
            changed = changes(before, snapshot(tenant, FIELDS))
            if changed:
                tenant.save()
                self.audit("update", tenant, changed)
        return Response(self.OutputSerializer(tenant).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        tenant = self.get_object()
        if not self.is_platform_admin:
            raise PermissionDenied("Only a platform admin can delete a tenant.")
        with transaction.atomic():
            # Recorded first: the row goes, and the tenant's audit rows are kept (tenant set to NULL).
            self.audit("delete", tenant, {})
            tenant.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
