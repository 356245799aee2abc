"""The admin shows each route's circuit breaker and resets it; routing policies are edited per tenant."""

import asyncio
import time

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditLog
from providers import breaker
from providers.models import ModelPolicy, ModelRoute, Provider

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:providers_modelroute_changelist")


@pytest.fixture(autouse=True)
def fresh_breakers(db):
    breaker.forget()
    yield
    # On a shared Redis, a later test's route may get this one's id (SQLite rolls its sequence back).
    breaker.reset(ModelRoute.objects.values_list("id", flat=True))
    breaker.forget()


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def route_of(tenant, model):
    provider = Provider.objects.create(name=f"{model}-p", kind="mock", tenant=tenant)
    return ModelRoute.objects.create(model=model, provider=provider, upstream_model="mock-1", tenant=tenant)


def open_breaker(route):
    async def fail():
        for _ in range(breaker.config().failures):
            await breaker.report(route.id, breaker.CLOSED, ok=False, now=time.time())

    asyncio.run(fail())
    assert breaker.states([route.id])[route.id].state == "open"


def breaker_column(client, route):
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    [found] = [r for r in response.context["cl"].result_list if r.pk == route.pk]
    return found.breaker_state.describe()


def reset(client, *routes):
    return client.post(
        CHANGELIST,
        {"action": "reset_circuit_breakers", "_selected_action": [r.pk for r in routes]},
        follow=True,
    )


def test_the_route_list_shows_each_breaker(acme, acme_admin):
    healthy, failing = route_of(acme, "healthy"), route_of(acme, "failing")
    open_breaker(failing)
    client = logged_in(acme_admin)
    assert breaker_column(client, healthy) == "closed"
    assert breaker_column(client, failing).startswith("open (")
    page = client.get(reverse("admin:providers_modelroute_change", args=[failing.pk])).content.decode()
    assert "of cool-down left" in page


def test_a_tenant_admin_resets_the_breaker_of_their_route_and_it_is_audited(acme, acme_admin):
    route = route_of(acme, "failing")
    open_breaker(route)

    response = reset(logged_in(acme_admin), route)

    assert "Reset 1 circuit breakers" in response.content.decode()
    assert breaker.states([route.id])[route.id].state == "closed"
    assert asyncio.run(breaker.acquire(route.id, lease=1)) == breaker.CLOSED
    row = AuditLog.objects.get(action="model_route.breaker_reset")
    assert (row.actor, row.target_id, row.tenant) == (acme_admin, str(route.pk), acme)


def test_an_outsider_cannot_reset_another_tenants_breaker(acme, globex, globex_admin, acme_admin):
    route = route_of(acme, "failing")
    open_breaker(route)

    reset(logged_in(globex_admin), route)
    assert breaker.states([route.id])[route.id].state == "open"

    reset(logged_in(acme_admin), route)  # the same request from its owner goes through
    assert breaker.states([route.id])[route.id].state == "closed"


def test_only_a_platform_admin_resets_a_shared_route(acme_admin, platform_admin):
    route = route_of(None, "shared-failing")
    open_breaker(route)

    response = reset(logged_in(acme_admin), route)
    assert "1 shared routes left alone" in response.content.decode()
    assert breaker.states([route.id])[route.id].state == "open"

    reset(logged_in(platform_admin), route)
    assert breaker.states([route.id])[route.id].state == "closed"


def test_a_tenant_admin_adds_a_policy_to_their_own_tenant(acme, acme_admin, globex):
    response = logged_in(acme_admin).post(
        reverse("admin:providers_modelpolicy_add"),
        {
            "model": "gpt-4o",
            "tenant": globex.pk,
            "strategy": "least_latency",
            "max_attempts": "3",
            "deadline_seconds": "20",
            "fallback_models": "claude-sonnet, gpt-4o-mini",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = ModelPolicy.objects.get(model="gpt-4o")
    assert policy.tenant == acme  # whatever the POST said
    assert (policy.strategy, policy.max_attempts, policy.deadline_seconds) == ("least_latency", 3, 20.0)
    assert policy.fallback_models == ["claude-sonnet", "gpt-4o-mini"]


def test_a_policy_cannot_name_its_own_model_as_fallback(acme, acme_admin):
    response = logged_in(acme_admin).post(
        reverse("admin:providers_modelpolicy_add"),
        {
            "model": "gpt-4o",
            "strategy": "priority",
            "max_attempts": "1",
            "fallback_models": "gpt-4o",
        },
    )
    assert response.status_code == 200
    assert "its own fallback" in str(response.context["adminform"].form.errors)
    assert not ModelPolicy.objects.exists()


def test_an_outsider_neither_lists_nor_opens_another_tenants_policy(acme, acme_admin, globex_admin):
    policy = ModelPolicy.objects.create(model="gpt-4o", tenant=acme, strategy="round_robin")
    changelist = reverse("admin:providers_modelpolicy_changelist")
    change = reverse("admin:providers_modelpolicy_change", args=[policy.pk])

    outsider = logged_in(globex_admin)
    assert list(outsider.get(changelist).context["cl"].result_list) == []
    assert outsider.get(change).status_code == 302  # "doesn't exist": back to the admin index

    owner = logged_in(acme_admin)
    assert list(owner.get(changelist).context["cl"].result_list) == [policy]
    assert owner.get(change).status_code == 200
