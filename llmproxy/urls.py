from django.contrib import admin
from django.urls import include, path

from llmproxy import dashboard, ops_views
from llmproxy.api import docs as api_docs

urlpatterns = [
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    # Before the admin's own URLs, whose catch-all would answer 404 for these.
    path("admin/usage/", admin.site.admin_view(dashboard.usage_index), name="usage-dashboard"),
    path(
        "admin/usage/<slug:slug>/",
        admin.site.admin_view(dashboard.usage_tenant),
        name="usage-dashboard-tenant",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include("llmproxy.api.urls")),
    path("api/schema/", api_docs.schema_view, name="api-schema"),
    path("api/docs/", api_docs.swagger_view, name="api-docs"),
]
