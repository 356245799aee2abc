"""Liveness and readiness probes, and the Prometheus scrape: served by Django's handler, not the consumers."""

import hmac
import ipaddress

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.utils.decorators import sync_and_async_middleware


async def healthz(request):
    return JsonResponse({"status": "ok"})


def _database_answers():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, "ok"
    except Exception as exc:  # any driver error means "not ready"
        return False, type(exc).__name__
    finally:
        connection.close_if_unusable_or_obsolete()


async def readyz(request):
    from llmproxy.redis_client import ping_redis

    db_ok, db_detail = await sync_to_async(_database_answers, thread_sensitive=False)()
    checks = {"database": db_detail}
    ok = db_ok
    redis_ok, checks["redis"] = await ping_redis()
    ok = ok and redis_ok
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    return JsonResponse(body, status=200 if ok else 503)


def metrics_allowed(request) -> tuple[bool, int]:
    """(allowed, status when not): the scraper's address must be in LLMPROXY_METRICS_ALLOWED_NETWORKS
    and, when LLMPROXY_METRICS_TOKEN is set, it must send that token as a Bearer token."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return False, 403
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not any(address in network for network in settings.LLMPROXY_METRICS_ALLOWED_NETWORKS):
        return False, 403
    token = settings.LLMPROXY_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return False, 401
    return True, 200


def _render_metrics():
    from llmproxy import metrics

    try:
        return metrics.exposition()
    finally:
        connection.close_if_unusable_or_obsolete()


async def metrics(request):
    from prometheus_client import CONTENT_TYPE_LATEST

    allowed, status = metrics_allowed(request)
    if not allowed:
        response = HttpResponse(
            "Forbidden\n" if status == 403 else "Unauthorized\n", status=status, content_type="text/plain"
        )
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # Off the loop: a multiprocess scrape reads every process's files, and the circuit states
    # come from the database and Redis.
    body = await sync_to_async(_render_metrics, thread_sensitive=False)()
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


@sync_and_async_middleware
def metrics_before_host_check(get_response):
    """GET /metrics answered ahead of the other middleware, whatever Host header the scraper sends.

    Prometheus addresses each process by its IP (Docker DNS, Kubernetes pod discovery) and
    cannot set a Host header, which CommonMiddleware checks against ALLOWED_HOSTS. That
    check guards the URLs Django builds from the Host; /metrics builds none, and
    metrics_allowed() decides who may read it. First in MIDDLEWARE.
    """
    if iscoroutinefunction(get_response):

        async def middleware(request):
            if request.path_info == "/metrics":
                return await metrics(request)
            return await get_response(request)

    else:  # the test client and any WSGI server

        def middleware(request):
            if request.path_info == "/metrics":
                return async_to_sync(metrics)(request)
            return get_response(request)

    return middleware
