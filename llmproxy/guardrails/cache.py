"""Each tenant's compiled guardrails, per process, reloaded every LLMPROXY_CONFIG_TTL_SECONDS.

Like the routing table: one query (plus one for key scopes) per tenant per
TTL, in a worker thread, so a rule added, changed or switched off in the
admin or by a command takes effect everywhere within that time. A tenant
without active guardrails is cached as None: its requests pay one cache
lookup and nothing else.
"""

from asgiref.sync import sync_to_async
from django.conf import settings

from llmproxy.guardrails.engine import RequestGuard, TenantRules, compile_tenant
from llmproxy.ttl_cache import TTLCache


def load(tenant_id: int) -> TenantRules | None:
    from tenants.models import Guardrail

    guardrails = list(Guardrail.objects.active().filter(tenant_id=tenant_id).select_related("tenant"))
    if not guardrails:
        return None
    scopes: dict = {}
    through = Guardrail.api_keys.through
    for guardrail_id, key_id in through.objects.filter(guardrail__in=guardrails).values_list(
        "guardrail_id", "apikey_id"
    ):
        scopes.setdefault(guardrail_id, set()).add(key_id)
    pairs = [(g, scopes.get(g.id, ())) for g in guardrails]
    return compile_tenant(tenant_id, guardrails[0].tenant.slug, pairs)


_load_async = sync_to_async(load, thread_sensitive=False)
_cache = TTLCache(ttl=settings.LLMPROXY_CONFIG_TTL_SECONDS)


async def rules_for(tenant_id: int) -> TenantRules | None:
    return await _cache.get(tenant_id, lambda: _load_async(tenant_id))


async def guard_for(key, model: str, request_id: str = "") -> RequestGuard | None:
    """The guardrails of this request (a keys.lookup.KeyRecord and the public model), or None."""
    rules = await rules_for(key.tenant.id)
    if rules is None:
        return None
    selection = rules.select(key.id, model)
    if selection is None:
        return None
    return RequestGuard(
        selection,
        tenant_id=rules.tenant_id,
        tenant_slug=rules.slug,
        request_id=request_id,
        key_prefix=key.prefix,
    )


def forget(tenant_id=None):
    """Drop cached rules (tests, and after changes made in this process)."""
    _cache.invalidate(tenant_id)
