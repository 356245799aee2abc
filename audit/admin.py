from django.contrib import admin

from audit.models import AuditLog, RequestLog
from llmproxy.admin_scoping import ReadOnlyScopedAdmin


class StatusClassFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status_class"

    def lookups(self, request, model_admin):
        return (("2", "2xx"), ("4", "4xx"), ("429", "429 (quota)"), ("5", "5xx"))

    def queryset(self, request, queryset):
        value = self.value()
        if value == "429":
            return queryset.filter(status=429)
        if value in ("2", "4", "5"):
            low = int(value) * 100
            return queryset.filter(status__gte=low, status__lt=low + 100)
        return queryset


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyScopedAdmin):
    list_display = (
        "created_at",
        "tenant",
        "key_prefix",
        "endpoint",
        "model",
        "provider",
        "status",
        "stream",
        "cache_hit",
        "input_tokens",
        "output_tokens",
        "cost",
        "latency_ms",
    )
    list_filter = (StatusClassFilter, "cache_hit", "stream", "model", "tenant")
    # key_prefix is stored on the row: listing it needs no join to the keys.
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"
    search_fields = ("=request_id", "=key_prefix")


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyScopedAdmin):
    list_display = ("created_at", "actor_label", "action", "target_type", "target_repr", "tenant", "ip")
    list_filter = ("action", "tenant")
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"
    search_fields = ("action", "target_repr", "=target_id", "actor_label")
