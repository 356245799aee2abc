"""Building blocks of the gateway's end-to-end tests."""

import time
from datetime import timedelta

import openai
from django.utils import timezone

from audit.models import RequestLog
from keys.services import api_key_create
from providers.models import ModelRoute, Provider
from tenants.models import GuardrailHit


def make_route(
    tenant,
    model,
    upstream_base,
    upstream_model="mock-1",
    *,
    kind="openai_compatible",
    name=None,
    shared=False,
    **route_fields,
):
    provider = Provider.objects.create(
        name=name or f"up-{model}",
        kind=kind,
        base_url=upstream_base,
        tenant=None if shared else tenant,
        timeout_seconds=route_fields.pop("timeout", 30.0),
        api_key_env=route_fields.pop("api_key_env", ""),
        api_version=route_fields.pop("api_version", ""),
    )
    route = ModelRoute.objects.create(
        model=model,
        provider=provider,
        upstream_model=upstream_model,
        tenant=None if shared else tenant,
        **route_fields,
    )
    return provider, route


def make_key(tenant, **fields):
    if "expires_in" in fields:
        fields["expires_at"] = timezone.now() + timedelta(seconds=fields.pop("expires_in"))
    return api_key_create(tenant=tenant, **fields)


def client(proxy_server, key, **kwargs):
    return openai.OpenAI(base_url=f"{proxy_server.base_url}/v1", api_key=key, max_retries=0, **kwargs)


def wait_for_logs(count, timeout=10.0, **filters):
    """The RequestLog rows matching ``filters`` once ``count`` of them are written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(RequestLog.objects.filter(**filters).order_by("created_at"))
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"expected {count} request log rows for {filters}, found {len(rows)}")


def wait_for_hits(rule, count, timeout=10.0):
    """{(action, shadow): count} of ``rule``'s GuardrailHit rows once they add up to ``count``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(GuardrailHit.objects.filter(guardrail=rule))
        if sum(r.count for r in rows) >= count:
            return {(r.action, r.shadow): r.count for r in rows}
        time.sleep(0.05)
    raise AssertionError(f"expected {count} hits of {rule.name}")
