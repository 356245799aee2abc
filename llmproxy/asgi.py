import functools
import os
import sys

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

# Under Daphne, Twisted parses every POST's Content-Type with the email package:
# 70 µs a request, 8% of a proxied call's CPU in bench/ profiles. The answer
# depends only on the header's bytes, and clients send a handful of values.
_twisted_http = sys.modules.get("twisted.web.http")
if _twisted_http is not None and hasattr(_twisted_http, "_parseContentType"):
    _twisted_http._parseContentType = functools.lru_cache(maxsize=256)(_twisted_http._parseContentType)

# Daphne has no ASGI lifespan (llmproxy/gateway/lifespan.py): close the upstream
# connections while its loop still runs, or aiohttp logs an "Unclosed client
# session" error at every stop. The usage records are written by an atexit hook.
_reactor = sys.modules.get("twisted.internet.reactor")
if _reactor is not None and hasattr(_reactor, "_asyncioEventloop"):

    def _close_upstream_sessions():
        import asyncio

        from twisted.internet.defer import Deferred

        from providers import http

        return Deferred.fromFuture(asyncio.ensure_future(http.close(), loop=_reactor._asyncioEventloop))

    _reactor.addSystemEventTrigger("before", "shutdown", _close_upstream_sessions)

from llmproxy import heap  # noqa: E402

heap.freeze_now_and_after_warmup()
