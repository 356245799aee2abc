"""The audit log and the request log: read-only, filtered, paginated by a cursor on time."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from audit.models import AuditLog, RequestLog
from keys.models import ApiKey
from llmproxy.api.base import ScopedApi, ScopedRetrieveApi, filtered
from llmproxy.api.pagination import LogCursor


class TimeFilter(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="From this time on (inclusive).")
    until = serializers.DateTimeField(required=False, help_text="Before this time.")
    tenant = serializers.SlugField(required=False, max_length=63, help_text="Tenant slug.")
    key = serializers.RegexField(
        r"^lp-[A-Za-z0-9]{8}$", required=False, help_text="API key prefix, lp-AAAAAAAA."
    )


def _filter(view, rows, values, *, key_filter, **lookups):
    rows = filtered(
        rows, values, since="created_at__gte", until="created_at__lt", tenant="tenant__slug", **lookups
    )
    return view.rows_of_key(rows, values["key"], key_filter) if "key" in values else rows


class AuditLogOutput(serializers.ModelSerializer):
    class Meta:
        model = AuditLog
        fields = (
            "id",
            "created_at",
            "actor",
            "actor_label",
            "tenant",
            "action",
            "target_type",
            "target_id",
            "target_repr",
            "metadata",
            "ip",
            "chain",
            "seq",
            "prev_hash",
            "row_hash",
        )
        read_only_fields = fields


class AuditLogListApi(ScopedApi):
    pagination_class = LogCursor
    model = AuditLog

    class FilterSerializer(TimeFilter):
        action = serializers.CharField(required=False, max_length=64, help_text="e.g. api_key.rotate")
        key = serializers.RegexField(
            r"^lp-[A-Za-z0-9]{8}$", required=False, help_text="Rows about this API key (its prefix)."
        )

    class OutputSerializer(AuditLogOutput):
        pass

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        rows = _filter(
            self,
            self.get_queryset(),
            values,
            key_filter=lambda key_id: {"target_type": ApiKey._meta.label, "target_id": str(key_id)},
            action="action",
        )
        return self.paginated(rows, self.OutputSerializer)


class AuditLogDetailApi(ScopedRetrieveApi):
    model = AuditLog

    class OutputSerializer(AuditLogOutput):
        pass


REQUEST_FIELDS = (
    "id",
    "created_at",
    "request_id",
    "tenant",
    "api_key",
    "key_prefix",
    "endpoint",
    "model",
    "provider",
    "upstream_model",
    "status",
    "stream",
    "input_tokens",
    "output_tokens",
    "tokens_estimated",
    "cost",
    "latency_ms",
    "ttfb_ms",
    "cache_hit",
    "error_type",
    "attempts",
)


class RequestLogOutput(serializers.ModelSerializer):
    class Meta:
        model = RequestLog
        fields = REQUEST_FIELDS
        read_only_fields = fields


class RequestLogListApi(ScopedApi):
    pagination_class = LogCursor
    model = RequestLog

    class FilterSerializer(TimeFilter):
        model = serializers.CharField(required=False, max_length=200, help_text="Public model name.")
        status = serializers.IntegerField(
            required=False, min_value=100, max_value=599, help_text="HTTP status."
        )

    class OutputSerializer(RequestLogOutput):
        pass

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        rows = _filter(
            self,
            self.get_queryset(),
            values,
            key_filter=lambda key_id: {"api_key_id": key_id},
            model="model",
            status="status",
        )
        return self.paginated(rows, self.OutputSerializer)


class RequestLogDetailApi(ScopedRetrieveApi):
    model = RequestLog

    class OutputSerializer(RequestLogOutput):
        class Meta(RequestLogOutput.Meta):
            # Only stored when the tenant opted in, and then redacted (audit/redaction.py).
            fields = (*REQUEST_FIELDS, "prompt", "completion")
            read_only_fields = fields
