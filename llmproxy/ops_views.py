"""Liveness and readiness probes (served by Django's handler, not the /v1 consumers)."""

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpResponse, JsonResponse


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
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


async def metrics(request):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from llmproxy import metrics as _  # noqa: F401 - registers the gateway's metrics

    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
