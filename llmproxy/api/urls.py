from django.urls import path

from llmproxy.api.views import auth, guardrails, keys, logs, providers, quotas, routes, tenants, usage, users

app_name = "api"

urlpatterns = [
    path("auth/token", auth.TokenApi.as_view(), name="token"),
    path("me", users.MeApi.as_view(), name="me"),
    path("tenants/", tenants.TenantListApi.as_view(), name="tenant-list"),
    path("tenants/<int:pk>/", tenants.TenantDetailApi.as_view(), name="tenant-detail"),
    path("users/", users.UserListApi.as_view(), name="user-list"),
    path("users/<int:pk>/", users.UserDetailApi.as_view(), name="user-detail"),
    path("keys/", keys.KeyListApi.as_view(), name="key-list"),
    path("keys/<int:pk>/", keys.KeyDetailApi.as_view(), name="key-detail"),
    path("keys/<int:pk>/rotate", keys.KeyRotateApi.as_view(), name="key-rotate"),
    path("keys/<int:pk>/revoke", keys.KeyRevokeApi.as_view(), name="key-revoke"),
    path("providers/", providers.ProviderListApi.as_view(), name="provider-list"),
    path("providers/<int:pk>/", providers.ProviderDetailApi.as_view(), name="provider-detail"),
    path("model-routes/", routes.ModelRouteListApi.as_view(), name="model-route-list"),
    path("model-routes/<int:pk>/", routes.ModelRouteDetailApi.as_view(), name="model-route-detail"),
    path("quotas/", quotas.QuotaListApi.as_view(), name="quota-list"),
    path("quotas/<int:pk>/", quotas.QuotaDetailApi.as_view(), name="quota-detail"),
    path("guardrails/", guardrails.GuardrailListApi.as_view(), name="guardrail-list"),
    path("guardrails/<int:pk>/", guardrails.GuardrailDetailApi.as_view(), name="guardrail-detail"),
    path("guardrail-hits/", guardrails.GuardrailHitListApi.as_view(), name="guardrail-hit-list"),
    path("audit-logs/", logs.AuditLogListApi.as_view(), name="audit-log-list"),
    path("audit-logs/<int:pk>/", logs.AuditLogDetailApi.as_view(), name="audit-log-detail"),
    path("request-logs/", logs.RequestLogListApi.as_view(), name="request-log-list"),
    path("request-logs/<int:pk>/", logs.RequestLogDetailApi.as_view(), name="request-log-detail"),
    path("usage/", usage.UsageApi.as_view(), name="usage"),
]
