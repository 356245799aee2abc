"""Each tenant's routes, as the hot path holds them: public model -> ordered RouteTargets.

Loaded once per tenant per LLMPROXY_CONFIG_TTL_SECONDS (one query for all its
models). A model missing from a loaded table triggers an early reload
(rate-limited), so a route added a moment ago works on its first request.
A tenant's own routes for a model replace the shared routes of that model:
that is how a tenant brings its own credentials for a shared model name.
"""

import time

from asgiref.sync import sync_to_async
from django.conf import settings

from llmproxy.ttl_cache import TTLCache
from providers.adapters.base import ProviderTarget, RouteTarget

# A model a table lacks is looked up again at once unless it was missed less
# than this long ago (a flood of requests for an unknown model stays cheap).
_MISS_MEMORY = 1.0
_recent_misses: dict = {}


def _provider_target(provider) -> ProviderTarget:
    return ProviderTarget(
        id=provider.id,
        name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url,
        api_key_env=provider.api_key_env,
        encrypted_api_key=provider.encrypted_api_key,
        api_version=provider.api_version,
        extra_headers=dict(provider.extra_headers or {}),
        timeout=provider.timeout_seconds,
        connect_timeout=provider.connect_timeout_seconds,
        options=dict(provider.options or {}),
    )


def _load(tenant_id: int) -> dict[str, list[RouteTarget]]:
    from providers.models import ModelRoute

    own: dict[str, list[RouteTarget]] = {}
    shared: dict[str, list[RouteTarget]] = {}
    providers: dict[int, ProviderTarget] = {}
    routes = ModelRoute.objects.usable().filter(tenant_id__in=[tenant_id]).select_related("provider")
    shared_routes = ModelRoute.objects.usable().filter(tenant__isnull=True, provider__tenant__isnull=True)
    for route in list(routes) + list(shared_routes.select_related("provider")):
        provider = providers.get(route.provider_id)
        if provider is None:
            provider = providers[route.provider_id] = _provider_target(route.provider)
        target = RouteTarget(
            id=route.id,
            model=route.model,
            upstream_model=route.upstream_model,
            priority=route.priority,
            weight=route.weight,
            input_price=route.input_price,
            output_price=route.output_price,
            provider=provider,
        )
        (own if route.tenant_id else shared).setdefault(route.model, []).append(target)
    table = {**shared, **own}
    for targets in table.values():
        targets.sort(key=lambda t: (t.priority, -t.weight, t.id))
    return table


_load_async = sync_to_async(_load, thread_sensitive=False)
_cache = TTLCache(ttl=settings.LLMPROXY_CONFIG_TTL_SECONDS)


async def table_for(tenant_id: int) -> dict[str, list[RouteTarget]]:
    return await _cache.get(tenant_id, lambda: _load_async(tenant_id))


async def routes_for(tenant_id: int, model: str) -> list[RouteTarget]:
    table = await table_for(tenant_id)
    targets = table.get(model)
    if targets is None:
        now = time.monotonic()
        missed_at = _recent_misses.get((tenant_id, model))
        if missed_at is None or now - missed_at >= _MISS_MEMORY:
            if len(_recent_misses) > 10_000:
                _recent_misses.clear()
            _recent_misses[(tenant_id, model)] = now
            table = await _cache.reload(tenant_id, lambda: _load_async(tenant_id))
            targets = table.get(model)
    return targets or []


def forget(tenant_id=None):
    _cache.invalidate(tenant_id)
    _recent_misses.clear()
