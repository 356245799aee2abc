"""The usage dashboard in the admin: scoped to the tenant, charts that say what the rollups say."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from quotas.models import TokenUsageMetric
from tests.dashboard_support import Charts, at, expected_by_day, seed_usage, today

pytestmark = pytest.mark.django_db

INDEX = "/admin/usage/"


@pytest.fixture
def usage(acme, globex):
    return seed_usage(acme, globex)


def login(client, user):
    client.force_login(user)
    return client


def as_text(values):
    return {label: str(value) for label, value in values.items()}


def test_the_dashboard_asks_an_anonymous_visitor_to_log_in(client):
    response = client.get(INDEX)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_user_without_admin_access_never_sees_it(client, acme_user, usage):
    response = login(client, acme_user).get("/admin/usage/acme/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_tenant_admin_is_taken_to_their_own_tenant_whatever_they_ask(client, acme_admin, usage):
    login(client, acme_admin)

    assert client.get(INDEX)["Location"] == "/admin/usage/acme/"
    assert (
        client.get(f"{INDEX}?tenant=globex&start=2026-01-01")["Location"]
        == "/admin/usage/acme/?start=2026-01-01"
    )


def test_another_tenants_page_does_not_exist_for_a_tenant_admin(client, acme_admin, globex_admin, usage):
    assert login(client, acme_admin).get("/admin/usage/globex/").status_code == 404
    assert login(client, globex_admin).get("/admin/usage/acme/").status_code == 404
    assert login(client, acme_admin).get("/admin/usage/no-such-tenant/").status_code == 404


def test_a_tenant_admin_sees_their_tenants_numbers_by_day_and_nothing_of_the_outsider(
    client, acme, acme_admin, usage
):
    response = login(client, acme_admin).get("/admin/usage/acme/")

    assert response.status_code == 200
    page = response.content.decode()
    charts = Charts(page)
    start, end = today() - timedelta(days=13), today()
    for chart, series, field in (
        ("requests-per-day", "requests", "requests"),
        ("tokens-per-day", "input", "input_tokens"),
        ("tokens-per-day", "output", "output_tokens"),
        ("errors-per-day", "errors", "errors"),
    ):
        assert charts.values(chart, series) == as_text(expected_by_day([acme], start, end, field)), chart
    costs = charts.values("cost-per-day", "cost")
    assert costs[today().isoformat()] == "0.154"
    assert costs[(today() - timedelta(days=3)).isoformat()] == "0.0211"
    assert "globex" not in page and usage["outsider"].prefix not in page
    assert 'data-total="requests">Requests<span class="figure">83<' in page


def test_the_groups_show_each_model_and_key_of_the_range(client, acme_admin, usage):
    charts = Charts(login(client, acme_admin).get("/admin/usage/acme/").content.decode())

    assert charts.values("requests-per-model", "requests") == {"gpt-4o": "58", "claude-haiku": "25"}
    assert charts.values("cost-per-model", "cost") == {"gpt-4o": "0.1711", "claude-haiku": "0.014"}
    assert charts.values("errors-per-model", "errors") == {"gpt-4o": "5", "claude-haiku": "1"}
    backend, batch = usage["backend"], usage["batch"]
    assert charts.values("requests-per-key", "requests") == {
        f"{backend.prefix} backend": "70",
        f"{batch.prefix} batch": "12",
        "(deleted keys)": "1",
    }
    assert charts.values("tokens-per-key", "output") == {
        f"{backend.prefix} backend": "2100",
        f"{batch.prefix} batch": "270",
        "(deleted keys)": "10",
    }


def test_latency_percentiles_come_from_the_answered_requests_of_the_log(client, acme_admin, usage):
    charts = Charts(login(client, acme_admin).get("/admin/usage/acme/").content.decode())

    day = today().isoformat()
    # 100, 200, 300, 400 ms (the 502 is left out): median 250, p95 385 by linear interpolation.
    assert charts.values("latency-per-day", "p50")[day] == "250"
    assert charts.values("latency-per-day", "p95")[day] == "385"
    assert charts.values("latency-per-day", "p50")[(today() - timedelta(days=1)).isoformat()] == "50"
    assert (today() - timedelta(days=2)).isoformat() not in charts.values("latency-per-day", "p50")
    assert charts.values("latency-per-model", "p95") == {"gpt-4o": "385", "claude-haiku": "50"}


def test_a_date_range_picks_the_days(client, acme_admin, usage):
    start = today() - timedelta(days=25)
    end = today() - timedelta(days=2)
    response = login(client, acme_admin).get(f"/admin/usage/acme/?start={start}&end={end}")

    charts = Charts(response.content.decode())
    requests = charts.values("requests-per-day", "requests")
    assert len(requests) == 24 and min(requests) == start.isoformat() and max(requests) == end.isoformat()
    assert requests[(today() - timedelta(days=20)).isoformat()] == "999"
    assert requests[(today() - timedelta(days=3)).isoformat()] == "8"
    assert sum(int(v) for v in requests.values()) == 999 + 8


@pytest.mark.parametrize(
    "query, error",
    [
        ("start=2026-03-10&end=2026-03-01", "The start must not be after the end."),
        ("start=2024-01-01&end=2026-01-01", "Pick at most 366 days."),
        ("start=yesterday", "Enter a valid date."),
    ],
)
def test_a_wrong_range_says_so_and_shows_the_last_days(client, acme_admin, usage, query, error):
    response = login(client, acme_admin).get(f"/admin/usage/acme/?{query}")

    assert response.status_code == 200
    assert error in response.content.decode()
    assert len(Charts(response.content.decode()).values("requests-per-day", "requests")) == 14


def test_a_platform_admin_sees_every_tenant_together_and_each_ones_share(
    client, acme, globex, platform_admin, usage
):
    response = login(client, platform_admin).get(INDEX)

    assert response.status_code == 200
    charts = Charts(response.content.decode())
    start, end = today() - timedelta(days=13), today()
    assert charts.values("requests-per-day", "requests") == as_text(
        expected_by_day([acme, globex], start, end, "requests")
    )
    assert charts.values("requests-per-tenant", "requests") == {"globex": "300", "acme": "83"}
    assert charts.values("cost-per-tenant", "cost") == {"globex": "1.5", "acme": "0.1851"}
    assert (
        charts.values("requests-per-key", "requests")[
            f"globex: {usage['outsider'].prefix} globex-secret-project"
        ]
        == "300"
    )
    assert f'href="/admin/usage/globex/?start={start}&amp;end={end}"' in response.content.decode()


def test_a_platform_admin_opens_any_tenants_page(client, platform_admin, usage):
    login(client, platform_admin)

    assert (
        client.get(f"{INDEX}?tenant=globex&end=2026-01-01")["Location"]
        == "/admin/usage/globex/?end=2026-01-01"
    )
    charts = Charts(client.get("/admin/usage/globex/").content.decode())
    assert charts.values("requests-per-model", "requests") == {"globex-model": "300"}
    assert charts.values("latency-per-model", "p50") == {"globex-model": "7777"}


def test_names_from_clients_and_operators_are_escaped_in_the_charts(client, acme, acme_admin):
    TokenUsageMetric.objects.create(
        bucket=at(0, 1), tenant=acme, model='<script>alert("x")</script>', requests=1, cost=Decimal(0)
    )

    page = login(client, acme_admin).get("/admin/usage/acme/").content.decode()

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_an_empty_range_draws_empty_charts_that_say_so(client, acme_admin):
    page = login(client, acme_admin).get("/admin/usage/acme/").content.decode()

    charts = Charts(page)
    assert set(charts.values("requests-per-day", "requests").values()) == {"0"}
    assert charts.charts["requests-per-model"] == []
    assert "No usage in this range." in page


def test_the_admin_index_links_to_the_dashboard(client, acme_admin):
    page = login(client, acme_admin).get(reverse("admin:index")).content.decode()

    assert 'id="usage-dashboard-link"' in page and 'href="/admin/usage/"' in page
    assert 'id="content-main"' in page and "API keys" in page  # the apps are still listed
