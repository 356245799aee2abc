"""The admin shows each limit of a tenant and of a key with its live usage, reservations and reset time."""

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from keys.services import api_key_create
from quotas import limiter
from quotas.applicable import limits_for_key
from quotas.models import QuotaLimit

pytestmark = pytest.mark.django_db


def test_a_keys_page_shows_its_limits_with_settled_and_reserved_usage(client, acme, acme_admin):
    api_key, _ = api_key_create(tenant=acme, name="app")
    QuotaLimit.objects.create(
        tenant=acme, scope="key", api_key=api_key, metric="requests", period="day", limit=50
    )
    QuotaLimit.objects.create(tenant=acme, scope="tenant", metric="tokens", period="month", limit=10_000)
    ask = limiter.Ask(input_tokens=100, max_output_tokens=50, input_price=Decimal(0), output_price=Decimal(0))
    settled = async_to_sync(limiter.reserve)(limits_for_key(api_key), ask)
    async_to_sync(limiter.settle)(settled.reservation, input_tokens=100, output_tokens=20, cost=Decimal(0))
    async_to_sync(limiter.reserve)(limits_for_key(api_key), ask)  # still in flight

    client.force_login(acme_admin)
    page = client.get(f"/admin/keys/apikey/{api_key.pk}/change/").content.decode()
    # requests/day: one settled, one reserved; tokens/month: 120 settled, 150 reserved.
    assert "<td>key</td><td>requests</td><td>day</td><td>50</td><td>1</td><td>1</td>" in page
    assert "<td>tenant</td><td>tokens</td><td>month</td><td>10000</td><td>120</td><td>150</td>" in page
    assert "Resets at" in page

    tenant_page = client.get(f"/admin/tenants/tenant/{acme.pk}/change/").content.decode()
    assert "<td>tenant</td><td>tokens</td><td>month</td><td>10000</td><td>120</td><td>150</td>" in tenant_page
