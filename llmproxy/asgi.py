import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from llmproxy.gateway.routing import build_application  # noqa: E402

application = build_application(django_asgi_app)
