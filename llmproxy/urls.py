from django.contrib import admin
from django.urls import include, path

from llmproxy import ops_views
from llmproxy.api import docs as api_docs

urlpatterns = [
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("llmproxy.api.urls")),
    path("api/schema/", api_docs.schema_view, name="api-schema"),
    path("api/docs/", api_docs.swagger_view, name="api-docs"),
]
