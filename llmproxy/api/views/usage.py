"""Usage aggregates from the hourly rollups (TokenUsageMetric), grouped by day, model, key or tenant."""

from datetime import UTC

from django.db.models import F, Sum
from django.db.models.functions import TruncDate
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from llmproxy.api.base import ScopedApi, filtered
from llmproxy.api.pagination import Pages
from llmproxy.api.scoping import ADMIN, TENANT_ADMIN, USER
from quotas.models import TokenUsageMetric

DIMENSIONS = {
    "day": TruncDate("bucket", tzinfo=UTC),
    "model": F("model"),
    "key": F("api_key__prefix"),
    "tenant": F("tenant__slug"),
}
TOTALS = ("requests", "input_tokens", "output_tokens", "cost", "errors", "cache_hits")


class GroupByField(serializers.CharField):
    def to_internal_value(self, data):
        names = [name.strip() for name in super().to_internal_value(data).split(",") if name.strip()]
        unknown = [name for name in names if name not in DIMENSIONS]
        if unknown or not names:
            raise serializers.ValidationError(
                f"Give one or more of {', '.join(DIMENSIONS)}, comma-separated."
            )
        return list(dict.fromkeys(names))


class UsageApi(ScopedApi):
    """Totals per group, oldest day first. A user (role user) sees the usage of their own keys."""

    model = TokenUsageMetric
    pagination_class = Pages
    read_roles = (ADMIN, TENANT_ADMIN, USER)

    class FilterSerializer(serializers.Serializer):
        group_by = GroupByField(
            required=False,
            max_length=100,
            help_text="Comma-separated: day, model, key, tenant (default: day).",
        )
        since = serializers.DateTimeField(required=False, help_text="Hours from this time on.")
        until = serializers.DateTimeField(required=False, help_text="Hours before this time.")
        tenant = serializers.SlugField(required=False, max_length=63, help_text="Tenant slug.")
        key = serializers.RegexField(r"^lp-[A-Za-z0-9]{8}$", required=False, help_text="API key prefix.")
        model = serializers.CharField(required=False, max_length=200, help_text="Public model name.")

    class OutputSerializer(serializers.Serializer):
        # Read from the g_/t_ aliases of the query (an annotation cannot reuse a field's name);
        # a dimension not grouped by is absent from the row, so from the answer.
        day = serializers.DateField(source="g_day", required=False, help_text="With group_by day.")
        model = serializers.CharField(source="g_model", required=False, help_text="With group_by model.")
        key = serializers.CharField(
            source="g_key", required=False, help_text="With group_by key (null: deleted keys)."
        )
        tenant = serializers.CharField(
            source="g_tenant", required=False, help_text="With group_by tenant (slug)."
        )
        requests = serializers.IntegerField(source="t_requests")
        input_tokens = serializers.IntegerField(source="t_input_tokens")
        output_tokens = serializers.IntegerField(source="t_output_tokens")
        cost = serializers.DecimalField(source="t_cost", max_digits=30, decimal_places=8, help_text="USD.")
        errors = serializers.IntegerField(source="t_errors")
        cache_hits = serializers.IntegerField(source="t_cache_hits")

    def base_queryset(self):
        return TokenUsageMetric.objects.all()

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        rows = filtered(
            self.get_queryset(),
            values,
            since="bucket__gte",
            until="bucket__lt",
            tenant="tenant__slug",
            model="model",
        )
        if "key" in values:
            rows = self.rows_of_key(rows, values["key"], lambda key_id: {"api_key_id": key_id})
        dimensions = values.get("group_by") or ["day"]
        groups = [f"g_{name}" for name in dimensions]
        totals = (
            rows.annotate(**{f"g_{name}": DIMENSIONS[name] for name in dimensions})
            .values(*groups)
            .annotate(**{f"t_{name}": Sum(name) for name in TOTALS})
            .order_by(*groups)
        )
        return self.paginated(totals, self.OutputSerializer)
