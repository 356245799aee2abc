from datetime import UTC, datetime
from decimal import Decimal

import pytest

from keys.services import api_key_create
from quotas.models import TokenUsageMetric
from tests.api_support import API, error_of

pytest_plugins = ["tests.api_fixtures"]

DAY1 = datetime(2030, 1, 1, 10, tzinfo=UTC)
DAY2 = datetime(2030, 1, 2, 23, tzinfo=UTC)


def hour(tenant, api_key, bucket, model, requests):
    TokenUsageMetric.objects.create(
        bucket=bucket,
        tenant=tenant,
        api_key=api_key,
        model=model,
        requests=requests,
        input_tokens=requests * 10,
        output_tokens=requests * 20,
        cost=Decimal("0.01") * requests,
    )


@pytest.fixture
def usage(acme, acme_admin, acme_world, globex, globex_world):
    bobs = acme_world["api_key"]
    alices, _ = api_key_create(tenant=acme, name="alice", user=acme_admin)
    hour(acme, bobs, DAY1, "gpt-4o", 1)
    hour(acme, bobs, DAY1.replace(hour=11), "gpt-4o", 2)
    hour(acme, alices, DAY2, "claude", 4)
    hour(globex, globex_world["api_key"], DAY1, "gpt-4o", 8)
    return {"bobs": bobs, "alices": alices}


def totals(client, **params):
    response = client.get(f"{API}/usage/", {"since": "2030-01-01T00:00:00Z", **params})
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.mark.django_db
def test_usage_by_day_sums_the_hours_of_each_day(alice, usage):
    assert totals(alice) == [
        {
            "day": "2030-01-01",
            "requests": 3,
            "input_tokens": 30,
            "output_tokens": 60,
            "cost": "0.03000000",
            "errors": 0,
            "cache_hits": 0,
        },
        {
            "day": "2030-01-02",
            "requests": 4,
            "input_tokens": 40,
            "output_tokens": 80,
            "cost": "0.04000000",
            "errors": 0,
            "cache_hits": 0,
        },
    ]


@pytest.mark.django_db
def test_usage_by_model_and_key(alice, usage):
    by_model = {row["model"]: row["requests"] for row in totals(alice, group_by="model")}
    by_key = {row["key"]: row["requests"] for row in totals(alice, group_by="key")}

    assert by_model == {"claude": 4, "gpt-4o": 3}
    assert by_key == {usage["alices"].prefix: 4, usage["bobs"].prefix: 3}


@pytest.mark.django_db
def test_a_platform_admin_sees_every_tenant_and_can_group_by_tenant(platform, usage):
    rows = totals(platform, group_by="tenant,model")

    assert [(r["tenant"], r["model"], r["requests"]) for r in rows] == [
        ("acme", "claude", 4),
        ("acme", "gpt-4o", 3),
        ("globex", "gpt-4o", 8),
    ]


@pytest.mark.django_db
def test_a_user_sees_only_the_usage_of_their_own_keys(bob, usage):
    rows = totals(bob, group_by="key")

    assert [(r["key"], r["requests"]) for r in rows] == [(usage["bobs"].prefix, 3)]
    assert totals(bob, key=usage["alices"].prefix) == []


@pytest.mark.django_db
def test_the_outsider_sees_none_of_another_tenants_usage(charlie, usage):
    assert [r["requests"] for r in totals(charlie)] == [8]
    assert totals(charlie, tenant="acme") == []
    assert totals(charlie, key=usage["bobs"].prefix) == []


@pytest.mark.django_db
def test_filters_by_time_and_model(alice, usage):
    assert [r["requests"] for r in totals(alice, until="2030-01-02T00:00:00Z")] == [3]
    assert [r["requests"] for r in totals(alice, model="claude")] == [4]


@pytest.mark.django_db
@pytest.mark.parametrize("group_by", ["week", ",", "day,bogus"])
def test_an_unknown_grouping_is_refused(alice, usage, group_by):
    response = alice.get(f"{API}/usage/", {"group_by": group_by})

    assert response.status_code == 400 and "group_by" in error_of(response)["fields"]
