"""Each tenant's routing policies, as the routing table hands them to the router."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from providers import http, router, routing_table
from providers.models import ModelPolicy, ModelRoute, Provider
from providers.routing_table import DEFAULT_POLICY, RoutePolicy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_table():
    routing_table.forget()
    yield
    routing_table.forget()


def route(tenant, model, **fields):
    provider, _ = Provider.objects.get_or_create(name="p", tenant=tenant, defaults={"kind": "mock"})
    return ModelRoute.objects.create(
        model=model, provider=provider, upstream_model="mock-1", tenant=tenant, **fields
    )


def run(coroutine_function):
    async def main():
        # The routing table loads in a worker thread: one thread, so that its database
        # connection can be closed afterwards (PostgreSQL drops the test database at the end).
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        try:
            return await coroutine_function()
        finally:
            await sync_to_async(connections.close_all, thread_sensitive=False)()
            await http.close()

    return asyncio.run(main())


def routes(tenant, model):
    return run(lambda: routing_table.routes_for(tenant.id, model))


def test_a_model_without_a_policy_gets_the_default_one(acme):
    route(acme, "gpt-4o")
    found = routes(acme, "gpt-4o")
    assert found.policy == DEFAULT_POLICY == RoutePolicy("priority", (), 1, None)
    assert found.tenant_id == acme.id


def test_a_shared_policy_applies_and_the_tenants_own_replaces_it(acme, globex):
    route(None, "gpt-4o")
    ModelPolicy.objects.create(
        model="gpt-4o", strategy="lowest_cost", fallback_models=["claude"], max_attempts=3
    )
    ModelPolicy.objects.create(model="gpt-4o", tenant=globex, strategy="round_robin", deadline_seconds=12.5)

    assert routes(acme, "gpt-4o").policy == RoutePolicy("lowest_cost", ("claude",), 3, None)
    assert routes(globex, "gpt-4o").policy == RoutePolicy("round_robin", (), 1, 12.5)


def test_another_tenants_policy_never_applies(acme, globex):
    route(acme, "gpt-4o")
    ModelPolicy.objects.create(model="gpt-4o", tenant=globex, strategy="weighted", fallback_models=["x"])
    assert routes(acme, "gpt-4o").policy == DEFAULT_POLICY


def test_routes_carry_the_providers_first_byte_timeout(acme):
    route(acme, "gpt-4o")
    Provider.objects.filter(name="p").update(first_byte_timeout_seconds=2.5)
    [target] = routes(acme, "gpt-4o")
    assert (target.provider.timeout, target.provider.first_byte_timeout) == (60.0, 2.5)


def test_an_unknown_model_has_no_routes_but_still_knows_its_tenant(acme):
    found = routes(acme, "nothing")
    assert list(found) == [] and found.tenant_id == acme.id


def test_a_fallback_to_a_model_the_tenant_may_not_use_is_dropped(acme, globex):
    acme.allowed_models = ["gpt-4o", "claude"]
    acme.save()
    route(None, "gpt-4o")
    ModelPolicy.objects.create(model="gpt-4o", fallback_models=["o1-pro", "claude", "gpt-4o-mini"])

    assert routes(acme, "gpt-4o").policy.fallback_models == ("claude",)
    assert routes(globex, "gpt-4o").policy.fallback_models == ("o1-pro", "claude", "gpt-4o-mini")


def test_a_fallback_model_the_caller_refuses_is_not_tried(acme, upstream):
    provider = Provider.objects.create(name="up", kind="openai_compatible", base_url=upstream.v1, tenant=acme)
    ModelRoute.objects.create(
        model="gpt-4o", provider=provider, upstream_model="mock-1?fail_status=503", tenant=acme
    )
    ModelRoute.objects.create(model="claude", provider=provider, upstream_model="mock-2", tenant=acme)
    ModelPolicy.objects.create(model="gpt-4o", tenant=acme, fallback_models=["claude"])

    def ask(model_allowed):
        async def call():
            targets = await routing_table.routes_for(acme.id, "gpt-4o")
            body = {"messages": [{"role": "user", "content": "Hi"}]}
            return await router.call(
                targets, "chat", lambda t: body, stream=False, model_allowed=model_allowed
            )

        return run(call)

    assert ask(lambda model: True).target.model == "claude"
    with pytest.raises(router.AllRoutesFailed) as failure:
        ask(lambda model: model != "claude")
    assert [a.model for a in failure.value.attempts] == ["gpt-4o"]
