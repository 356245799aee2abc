from django.contrib import admin

from llmproxy.admin_scoping import ReadOnlyScopedAdmin, TenantScopedAdmin
from quotas.models import QuotaLimit, TokenUsageMetric
from quotas.usage_display import limits_table, usage_of


@admin.register(QuotaLimit)
class QuotaLimitAdmin(TenantScopedAdmin):
    list_display = ("tenant", "scope", "user", "api_key", "metric", "period", "limit", "usage", "updated_at")
    list_filter = ("scope", "metric", "period", "tenant")
    list_select_related = ("tenant", "user", "api_key")
    search_fields = ("user__username", "api_key__prefix")
    autocomplete_fields = ("user", "api_key")
    fields = ("tenant", "scope", "user", "api_key", "metric", "period", "limit", "current_usage")
    readonly_fields = ("current_usage",)

    @admin.display(description="Used / reserved (resets at)")
    def usage(self, obj):
        usage = usage_of(obj)
        if usage is None:
            return "quota store unavailable"
        return f"{usage['used']:g} / {usage['reserved']:g} ({usage['resets_at']:%Y-%m-%d %H:%M} UTC)"

    @admin.display(description="Current usage")
    def current_usage(self, obj):
        return limits_table([obj]) if obj.pk else "-"


@admin.register(TokenUsageMetric)
class TokenUsageMetricAdmin(ReadOnlyScopedAdmin):
    list_display = (
        "bucket",
        "tenant",
        "api_key",
        "model",
        "requests",
        "input_tokens",
        "output_tokens",
        "cost",
        "errors",
        "cache_hits",
    )
    list_filter = ("tenant", "model")
    list_select_related = ("tenant", "api_key")
    date_hierarchy = "bucket"
    search_fields = ("=model", "=api_key__prefix")
