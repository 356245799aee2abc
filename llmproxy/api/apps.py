from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "llmproxy.api"
    label = "api"
    verbose_name = "REST admin API"
    default_auto_field = "django.db.models.BigAutoField"
