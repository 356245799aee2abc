"""Helpers of the REST API tests (their fixtures are in tests/api_fixtures.py)."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditLog, RequestLog
from audit.services import audit_record
from keys.services import api_key_create
from llmproxy.api.tokens import access_token_issue
from providers.models import ModelRoute, Provider
from quotas.models import QuotaLimit, TokenUsageMetric
from tenants.models import Guardrail, GuardrailHit

API = "/api/v1"


def client_for(user):
    """An API client that authenticates as ``user`` with a real token."""
    client = APIClient(REMOTE_ADDR="203.0.113.5")
    if user is not None:
        _, plain = access_token_issue(user=user, name="tests")
        client.credentials(HTTP_AUTHORIZATION=f"Token {plain}")
    return client


def populate(tenant, user):
    """One of everything for ``tenant``; the key and its usage belong to ``user``."""
    slug = tenant.slug
    provider = Provider.objects.create(name=f"{slug}-mock", kind="mock", tenant=tenant)
    api_key, plain = api_key_create(tenant=tenant, name=f"{slug}-key", user=user)
    now = timezone.now()
    guardrail = Guardrail.objects.create(tenant=tenant, name=f"{slug}-cards", detector="card", action="mask")
    return {
        "tenant": tenant,
        "user": user,
        "api_key": api_key,
        "plain_key": plain,
        "provider": provider,
        "route": ModelRoute.objects.create(
            model=f"{slug}-model", provider=provider, upstream_model="m", tenant=tenant
        ),
        "quota": QuotaLimit.objects.create(
            tenant=tenant, scope="key", api_key=api_key, metric="requests", period="minute", limit=10
        ),
        "audit_log": audit_record(action="test.event", tenant=tenant, metadata={"who": slug}),
        "request_log": RequestLog.objects.create(
            created_at=now - timedelta(minutes=5),
            request_id=f"req-{slug}",
            tenant=tenant,
            api_key=api_key,
            key_prefix=api_key.prefix,
            endpoint="chat/completions",
            model=f"{slug}-model",
            status=200,
            input_tokens=10,
            output_tokens=20,
            cost=Decimal("0.001"),
            prompt="hi",
            completion="hello",
        ),
        "guardrail": guardrail,
        "guardrail_hit": GuardrailHit.objects.create(
            guardrail=guardrail, day=now.date(), action="mask", shadow=False, count=4
        ),
        "usage": TokenUsageMetric.objects.create(
            bucket=now.replace(minute=0, second=0, microsecond=0),
            tenant=tenant,
            api_key=api_key,
            model=f"{slug}-model",
            requests=3,
            input_tokens=30,
            output_tokens=60,
            cost=Decimal("0.003"),
        ),
    }


def ids(response):
    body = response.json()
    return sorted(item["id"] for item in body["results"])


def last_audit(action):
    return AuditLog.objects.filter(action=action).order_by("-id").first()


def error_of(response):
    return response.json()["error"]
