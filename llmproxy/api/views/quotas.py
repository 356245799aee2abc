from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from keys.models import ApiKey
from llmproxy.api.base import ScopedDetailApi, ScopedListApi, ScopedRelatedField
from llmproxy.api.pagination import Pages
from quotas.applicable import as_limit
from quotas.limiter import current_usage
from quotas.limiter_types import LimiterUnavailable
from quotas.models import QuotaLimit
from quotas.services import plain_number
from tenants.models import Tenant, User

FIELDS = ("tenant", "scope", "user", "api_key", "metric", "period", "limit")


class UsageOutput(serializers.Serializer):
    used = serializers.CharField(
        help_text="Settled usage in this window, in the limit's unit (USD for cost)."
    )
    reserved = serializers.CharField(help_text="Held by requests in flight.")
    window_start = serializers.DateTimeField()
    resets_at = serializers.DateTimeField()

    class Meta:
        ref_name = "QuotaUsage"


class QuotaOutput(serializers.ModelSerializer):
    usage = serializers.SerializerMethodField()
    usage_error = serializers.SerializerMethodField()

    class Meta:
        model = QuotaLimit
        fields = ("id", *FIELDS, "usage", "usage_error", "created_at", "updated_at")
        read_only_fields = fields

    def _usage(self, obj):
        # Asked once per row, whichever of the two fields is serialised first.
        cache = self.context.setdefault("usage", {})
        if obj.pk not in cache:
            try:
                cache[obj.pk] = current_usage(as_limit(obj))
            except LimiterUnavailable:
                cache[obj.pk] = None
        return cache[obj.pk]

    @extend_schema_field(UsageOutput(allow_null=True))
    def get_usage(self, obj):
        usage = self._usage(obj)
        if usage is None:
            return None
        return {
            "used": plain_number(Decimal(usage["used"])),
            "reserved": plain_number(Decimal(usage["reserved"])),
            "window_start": usage["window_start"].isoformat(),
            "resets_at": usage["resets_at"].isoformat(),
        }

    def get_usage_error(self, obj) -> str | None:
        return "the quota store (Redis) does not answer" if self._usage(obj) is None else None


class QuotaInput(serializers.Serializer):
    tenant = ScopedRelatedField(Tenant, required=False, help_text="Default for a tenant admin: their tenant.")
    scope = serializers.ChoiceField(choices=QuotaLimit.Scope.choices, default=QuotaLimit.Scope.TENANT)
    user = ScopedRelatedField(User, required=False, allow_null=True, help_text="For scope user.")
    api_key = ScopedRelatedField(ApiKey, required=False, allow_null=True, help_text="For scope key.")
    metric = serializers.ChoiceField(choices=QuotaLimit.Metric.choices)
    period = serializers.ChoiceField(choices=QuotaLimit.Period.choices)
    limit = serializers.DecimalField(
        max_digits=18,
        decimal_places=6,
        min_value=Decimal(0),
        help_text="Requests, tokens or USD per period; usage may reach it but not pass it.",
    )


class QuotaListApi(ScopedListApi):
    model = QuotaLimit
    pagination_class = Pages
    ordering = ("id",)
    audited_fields = FIELDS

    class OutputSerializer(QuotaOutput):
        pass

    class InputSerializer(QuotaInput):
        pass

    def base_queryset(self):
        return QuotaLimit.objects.select_related("tenant", "user", "api_key")

    def check_create(self, values):
        if not self.is_platform_admin:
            values["tenant"] = self.request.user.tenant
        elif values.get("tenant") is None:
            # The key's or user's tenant when they name one; a tenant-wide limit names it.
            target = values.get("api_key") or values.get("user")
            values["tenant"] = getattr(target, "tenant", None)
        if values["tenant"] is None:
            raise serializers.ValidationError({"tenant": "Name the limit's tenant."})


class QuotaDetailApi(ScopedDetailApi):
    model = QuotaLimit
    audited_fields = FIELDS
    partial_update = False  # the limit is all a PATCH changes, and it names it

    class OutputSerializer(QuotaOutput):
        pass

    class InputSerializer(serializers.Serializer):
        limit = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=Decimal(0))
