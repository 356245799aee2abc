"""Which limits apply to a key: its tenant's, its user's and its own, nobody else's."""

from decimal import Decimal

import pytest

from keys.services import api_key_create
from quotas.applicable import limits_for_key
from quotas.limiter import Limit
from quotas.models import QuotaLimit


def quota(tenant, metric, period, limit, **target):
    scope = "key" if "api_key" in target else "user" if "user" in target else "tenant"
    return QuotaLimit.objects.create(
        tenant=tenant, scope=scope, metric=metric, period=period, limit=limit, **target
    )


@pytest.fixture
def bobs_key(acme, acme_user):
    return api_key_create(tenant=acme, user=acme_user, name="bob's")[0]


def test_a_key_gets_its_tenants_its_users_and_its_own_limits(acme, acme_user, acme_admin, globex, bobs_key):
    tenant = quota(acme, "requests", "minute", 100)
    user = quota(acme, "tokens", "hour", 5000, user=acme_user)
    own = quota(acme, "cost", "month", Decimal("12.50"), api_key=bobs_key)
    other_key = api_key_create(tenant=acme, name="other")[0]
    quota(acme, "requests", "minute", 1, api_key=other_key)
    quota(acme, "requests", "minute", 2, user=acme_admin)
    quota(globex, "requests", "minute", 3)

    found = sorted(limits_for_key(bobs_key), key=lambda limit: limit.id)

    assert found == [
        Limit(tenant.id, acme.id, "tenant", "requests", "minute", Decimal(100)),
        Limit(user.id, acme.id, "user", "tokens", "hour", Decimal(5000)),
        Limit(own.id, acme.id, "key", "cost", "month", Decimal("12.5")),
    ]


def test_a_key_without_a_user_gets_no_user_limits(acme, acme_user):
    quota(acme, "tokens", "day", 1000, user=acme_user)
    key = api_key_create(tenant=acme, name="service")[0]

    assert limits_for_key(key) == []
