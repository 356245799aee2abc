from django.contrib import admin

from llmproxy.admin_scoping import ReadOnlyScopedAdmin, TenantScopedAdmin
from quotas.models import QuotaLimit, TokenUsageMetric


@admin.register(QuotaLimit)
class QuotaLimitAdmin(TenantScopedAdmin):
    list_display = ("tenant", "scope", "user", "api_key", "metric", "period", "limit", "updated_at")
    list_filter = ("scope", "metric", "period", "tenant")
    list_select_related = ("tenant", "user", "api_key")
    search_fields = ("user__username", "api_key__prefix")
    autocomplete_fields = ("user", "api_key")
    fields = ("tenant", "scope", "user", "api_key", "metric", "period", "limit")


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
