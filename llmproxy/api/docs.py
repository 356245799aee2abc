"""The OpenAPI schema and Swagger UI, with assets from drf-spectacular-sidecar: the page loads no CDN."""

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

schema_view = SpectacularAPIView.as_view()
swagger_view = SpectacularSwaggerView.as_view(url_name="api-schema")
