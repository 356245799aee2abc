"""Each tenant's routes, as the hot path holds them: public model -> Routes (ordered RouteTargets + policy).

Loaded once per tenant per LLMPROXY_CONFIG_TTL_SECONDS (a few queries for all
its models: routes, policies, the tenant's allowed models). A model missing from a loaded table triggers an
early reload (rate-limited), so a route added a moment ago works on its first
request. A tenant's own routes for a model replace the shared routes of that
model: that is how a tenant brings its own credentials for a shared model
name. Its own policy for a model likewise replaces the shared policy.
"""

import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from llmproxy.ttl_cache import TTLCache
from providers.adapters.base import ProviderTarget, RouteTarget


@dataclass(slots=True)
class TimedProviderTarget(ProviderTarget):
    # Kept apart from ProviderTarget so adapters need not know about it: the router reads it.
    first_byte_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    strategy: str = "priority"
    fallback_models: tuple[str, ...] = ()
    max_attempts: int = 1
    deadline: float | None = None


DEFAULT_POLICY = RoutePolicy()


class Routes(list):
    """A model's routes in table order (priority, -weight, id), with how to use them.

    A list, so callers that only iterate routes need not know about policies;
    the router reads ``policy`` and, for fallback models, ``tenant_id``.
    """

    __slots__ = ("tenant_id", "policy")

    def __init__(self, targets=(), *, tenant_id=None, policy=DEFAULT_POLICY):
        super().__init__(targets)
        self.tenant_id = tenant_id
        self.policy = policy


# A model a table lacks is looked up again at once unless it was missed less
# than this long ago (a flood of requests for an unknown model stays cheap).
_MISS_MEMORY = 1.0
_recent_misses: dict = {}


def provider_target(provider) -> TimedProviderTarget:
    return TimedProviderTarget(
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
        first_byte_timeout=provider.first_byte_timeout_seconds,
    )


def route_target(route, provider: ProviderTarget) -> RouteTarget:
    return RouteTarget(
        id=route.id,
        model=route.model,
        upstream_model=route.upstream_model,
        priority=route.priority,
        weight=route.weight,
        input_price=route.input_price,
        output_price=route.output_price,
        provider=provider,
    )


def route_policy(policy, allowed_models=()) -> RoutePolicy:
    # A fallback never reaches a model the tenant may not use (its allowed models are the platform's call).
    fallbacks = [m for m in policy.fallback_models or () if isinstance(m, str) and m]
    return RoutePolicy(
        strategy=policy.strategy,
        fallback_models=tuple(m for m in fallbacks if not allowed_models or m in allowed_models),
        max_attempts=max(1, policy.max_attempts),
        deadline=policy.deadline_seconds,
    )


def _load(tenant_id: int) -> dict[str, Routes]:
    from providers.models import ModelPolicy, ModelRoute
    from tenants.models import Tenant

    own: dict[str, Routes] = {}
    shared: dict[str, Routes] = {}
    providers: dict[int, ProviderTarget] = {}
    routes = ModelRoute.objects.usable().filter(tenant_id__in=[tenant_id]).select_related("provider")
    shared_routes = ModelRoute.objects.usable().filter(tenant__isnull=True, provider__tenant__isnull=True)
    for route in list(routes) + list(shared_routes.select_related("provider")):
        provider = providers.get(route.provider_id)
        if provider is None:
            provider = providers[route.provider_id] = provider_target(route.provider)
        table = own if route.tenant_id else shared
        table.setdefault(route.model, Routes(tenant_id=tenant_id)).append(route_target(route, provider))
    table = {**shared, **own}
    own_policies, shared_policies = {}, {}
    allowed_models = Tenant.objects.filter(pk=tenant_id).values_list("allowed_models", flat=True).first()
    for policy in ModelPolicy.objects.visible_to(tenant_id):
        routing = route_policy(policy, allowed_models or ())
        (own_policies if policy.tenant_id else shared_policies)[policy.model] = routing
    policies = {**shared_policies, **own_policies}
    for model, targets in table.items():
        targets.sort(key=lambda t: (t.priority, -t.weight, t.id))
        targets.policy = policies.get(model, DEFAULT_POLICY)
    return table


_load_async = sync_to_async(_load, thread_sensitive=False)
_cache = TTLCache(ttl=settings.LLMPROXY_CONFIG_TTL_SECONDS)


async def table_for(tenant_id: int) -> dict[str, Routes]:
    return await _cache.get(tenant_id, lambda: _load_async(tenant_id))


async def routes_for(tenant_id: int, model: str) -> Routes:
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
    return targets if targets is not None else Routes(tenant_id=tenant_id)


def forget(tenant_id=None):
    _cache.invalidate(tenant_id)
    _recent_misses.clear()
