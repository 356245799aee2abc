import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy.settings")

# Before Django loads its middleware: the Django instrumentation adds its own (nothing without OTEL_*).
from llmproxy import tracing  # noqa: E402 - imports no model and no setting

tracing.setup()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

# Django must be set up before anything imports models. The static files
# handler serves the admin's and the API docs' assets from the installed apps
# (no collectstatic, no CDN); /v1 never reaches it.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

from llmproxy.gateway.routing import build_application  # noqa: E402

application = build_application(django_asgi_app)
