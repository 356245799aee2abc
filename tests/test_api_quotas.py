import uuid

import pytest
import redis
from asgiref.sync import async_to_sync

from llmproxy.api.views import quotas as quota_views
from quotas import limiter
from quotas.applicable import as_limit
from quotas.limiter_types import Ask, LimiterUnavailable
from quotas.models import QuotaLimit
from tests.api_support import API, error_of, ids, last_audit

pytest_plugins = ["tests.api_fixtures"]


@pytest.mark.django_db
def test_who_sees_which_limits(platform, alice, charlie, bob, acme_world, globex_world):
    acme_q, globex_q = acme_world["quota"], globex_world["quota"]

    assert ids(platform.get(f"{API}/quotas/")) == sorted([acme_q.pk, globex_q.pk])
    assert ids(alice.get(f"{API}/quotas/")) == [acme_q.pk]
    assert ids(charlie.get(f"{API}/quotas/")) == [globex_q.pk]
    assert bob.get(f"{API}/quotas/").status_code == 403
    assert bob.post(f"{API}/quotas/", {"metric": "requests", "period": "day", "limit": 1}).status_code == 403


@pytest.mark.django_db
def test_the_outsider_cannot_read_change_or_delete_another_tenants_limit(charlie, acme_world):
    quota = acme_world["quota"]

    assert charlie.get(f"{API}/quotas/{quota.pk}/").status_code == 404
    assert charlie.patch(f"{API}/quotas/{quota.pk}/", {"limit": 1_000_000}).status_code == 404
    assert charlie.delete(f"{API}/quotas/{quota.pk}/").status_code == 404
    assert QuotaLimit.objects.get(pk=quota.pk).limit == 10


@pytest.fixture
def own_limiter_keys(settings):
    """Limiter keys no other test run shares (Redis may be shared), removed afterwards."""
    settings.LLMPROXY_REDIS_KEY_PREFIX = f"lp-test-api-{uuid.uuid4().hex[:12]}"
    yield
    client = get_redis_sync()
    if client is not None:
        for key in client.scan_iter(f"{settings.LLMPROXY_REDIS_KEY_PREFIX}:*"):
            client.delete(key)


def get_redis_sync():
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None


@pytest.mark.django_db
def test_a_limit_shows_its_current_usage(alice, acme_world, own_limiter_keys):
    quota = acme_world["quota"]
    decision = async_to_sync(limiter.reserve)([as_limit(quota)], Ask(5, 0, 0, 0))
    async_to_sync(limiter.settle)(decision.reservation, input_tokens=5, output_tokens=0, cost=0)

    body = alice.get(f"{API}/quotas/{quota.pk}/").json()

    assert body["usage"]["used"] == "1" and body["usage"]["reserved"] == "0"
    assert body["usage_error"] is None and body["usage"]["resets_at"] > body["usage"]["window_start"]


@pytest.mark.django_db
def test_an_unreachable_quota_store_is_reported_not_failed(alice, acme_world, monkeypatch):
    def unavailable(limit, now=None):
        raise LimiterUnavailable("Redis does not answer")

    monkeypatch.setattr(quota_views, "current_usage", unavailable)

    body = alice.get(f"{API}/quotas/{acme_world['quota'].pk}/").json()

    assert body["usage"] is None and "does not answer" in body["usage_error"]


@pytest.mark.django_db
def test_a_tenant_admin_sets_a_limit_on_their_key_and_it_is_audited(alice, acme, acme_admin, acme_world):
    response = alice.post(
        f"{API}/quotas/",
        {
            "scope": "key",
            "api_key": acme_world["api_key"].pk,
            "metric": "tokens",
            "period": "day",
            "limit": "5000",
        },
    )

    assert response.status_code == 201
    quota = QuotaLimit.objects.get(pk=response.json()["id"])
    assert (quota.tenant, quota.metric, quota.limit) == (acme, "tokens", 5000)
    audit = last_audit("quota_limit.create")
    assert audit.actor == acme_admin and audit.metadata["changed"]["limit"] == [None, "5000"]


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["api_key", "user"])
def test_a_tenant_admin_cannot_limit_another_tenants_key_or_user(alice, globex_world, target):
    payload = {
        "scope": "key" if target == "api_key" else "user",
        target: globex_world[target].pk,
        "metric": "requests",
        "period": "day",
        "limit": 1,
    }

    response = alice.post(f"{API}/quotas/", payload)

    assert response.status_code == 400 and target in error_of(response)["fields"]
    assert QuotaLimit.objects.count() == 1


@pytest.mark.django_db
def test_a_platform_admin_cannot_mix_tenants_in_one_limit(platform, acme, globex_world):
    response = platform.post(
        f"{API}/quotas/",
        {
            "tenant": acme.pk,
            "scope": "key",
            "api_key": globex_world["api_key"].pk,
            "metric": "requests",
            "period": "day",
            "limit": 1,
        },
    )

    assert response.status_code == 400 and "api_key" in error_of(response)["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"scope": "key"}, "api_key"),
        ({"metric": "requests", "limit": "1.5"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"period": "week"}, "period"),
    ],
)
def test_bad_limits_are_refused(alice, acme_world, payload, field):
    response = alice.post(f"{API}/quotas/", {"metric": "cost", "period": "day", "limit": "5", **payload})

    assert response.status_code == 400 and field in error_of(response)["fields"]


@pytest.mark.django_db
def test_one_limit_per_target_metric_and_period(alice, acme_world):
    key = acme_world["api_key"].pk
    payload = {"scope": "key", "api_key": key, "metric": "requests", "period": "minute", "limit": 3}

    assert alice.post(f"{API}/quotas/", payload).status_code == 400


@pytest.mark.django_db
def test_a_tenant_admin_changes_and_deletes_their_limit(alice, acme_world):
    quota = acme_world["quota"]

    assert alice.patch(f"{API}/quotas/{quota.pk}/", {"limit": 20}).json()["limit"] == "20.000000"
    assert last_audit("quota_limit.update").metadata["changed"] == {"limit": ["10", "20"]}
    assert alice.delete(f"{API}/quotas/{quota.pk}/").status_code == 204
    assert not QuotaLimit.objects.filter(pk=quota.pk).exists()
