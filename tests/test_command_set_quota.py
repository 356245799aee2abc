from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditLog
from keys.services import api_key_create
from quotas.models import QuotaLimit


def run(*args):
    out = StringIO()
    call_command("set_quota", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def quota_state():
    return list(QuotaLimit.objects.order_by("pk").values_list("pk", "scope", "metric", "period", "limit"))


def assert_fails(*args, match):
    before = (quota_state(), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (quota_state(), AuditLog.objects.count()) == before


@pytest.fixture
def acme_key(acme):
    return api_key_create(tenant=acme, name="ci")[0]


@pytest.fixture
def globex_key(globex):
    return api_key_create(tenant=globex, name="ci")[0]


@pytest.mark.django_db
def test_it_sets_a_tenant_limit_and_audits_it(acme):
    output = run("--tenant", "acme", "--metric", "requests", "--period", "minute", "--limit", "100")

    assert output == "set quota for tenant acme: 100 requests per minute\n"
    quota = QuotaLimit.objects.get()
    assert (quota.tenant, quota.scope, quota.user, quota.api_key) == (acme, "tenant", None, None)
    assert (quota.metric, quota.period, quota.limit) == ("requests", "minute", 100)
    audit = AuditLog.objects.get(action="quota_limit.set")
    assert (audit.actor_label, audit.tenant, audit.target_id) == ("command", acme, str(quota.pk))
    assert (audit.metadata["limit"], audit.metadata["previous_limit"]) == ("100", None)


@pytest.mark.django_db
def test_setting_it_again_updates_the_one_limit(acme):
    run("--tenant", "acme", "--metric", "tokens", "--period", "day", "--limit", "1000")

    output = run("--tenant", "acme", "--metric", "tokens", "--period", "day", "--limit", "5000")

    assert output == "changed quota for tenant acme: 5000 tokens per day (was 1000)\n"
    assert QuotaLimit.objects.get().limit == 5000
    latest = AuditLog.objects.filter(action="quota_limit.set").order_by("-id").first()
    assert (latest.metadata["limit"], latest.metadata["previous_limit"]) == ("5000", "1000")


@pytest.mark.django_db
def test_the_same_value_again_changes_nothing_and_is_not_audited(acme):
    run("--tenant", "acme", "--metric", "tokens", "--period", "day", "--limit", "1000")

    output = run("--tenant", "acme", "--metric", "tokens", "--period", "day", "--limit", "1000")

    assert output == "quota for tenant acme unchanged: 1000 tokens per day\n"
    assert AuditLog.objects.filter(action="quota_limit.set").count() == 1


@pytest.mark.django_db
def test_each_metric_and_period_is_its_own_limit(acme):
    run("--tenant", "acme", "--metric", "requests", "--period", "minute", "--limit", "10")
    run("--tenant", "acme", "--metric", "requests", "--period", "day", "--limit", "1000")
    run("--tenant", "acme", "--metric", "tokens", "--period", "day", "--limit", "1000")

    assert QuotaLimit.objects.count() == 3


@pytest.mark.django_db
def test_a_cost_limit_is_in_usd_with_decimals(acme):
    output = run("--tenant", "acme", "--metric", "cost", "--period", "month", "--limit", "12.50")

    assert output == "set quota for tenant acme: 12.5 USD per month\n"
    assert QuotaLimit.objects.get().limit == Decimal("12.5")


@pytest.mark.django_db
def test_it_sets_a_key_limit_beside_the_tenant_limit(acme, acme_key):
    run("--tenant", "acme", "--metric", "requests", "--period", "hour", "--limit", "500")

    output = run(
        "--tenant",
        "acme",
        "--key",
        acme_key.prefix,
        "--metric",
        "requests",
        "--period",
        "hour",
        "--limit",
        "50",
    )

    assert output == f"set quota for key {acme_key.prefix} of tenant acme: 50 requests per hour\n"
    quota = QuotaLimit.objects.get(scope="key")
    assert (quota.api_key, quota.limit) == (acme_key, 50)
    assert QuotaLimit.objects.get(scope="tenant").limit == 500


@pytest.mark.django_db
def test_it_sets_a_user_limit(acme, acme_user):
    output = run(
        "--tenant", "acme", "--user", "bob", "--metric", "cost", "--period", "day", "--limit", "0.25"
    )

    assert output == "set quota for user bob of tenant acme: 0.25 USD per day\n"
    quota = QuotaLimit.objects.get()
    assert (quota.scope, quota.user, quota.limit) == ("user", acme_user, Decimal("0.25"))


@pytest.mark.django_db
def test_a_limit_of_0_is_allowed(acme):
    run("--tenant", "acme", "--metric", "requests", "--period", "day", "--limit", "0")

    assert QuotaLimit.objects.get().limit == 0


@pytest.mark.parametrize(("metric", "limit"), [("requests", "1.5"), ("tokens", "2.25")])
@pytest.mark.django_db
def test_requests_and_tokens_limits_are_whole_numbers(acme, metric, limit):
    assert_fails(
        "--tenant",
        "acme",
        "--metric",
        metric,
        "--period",
        "day",
        "--limit",
        limit,
        match=f"a {metric} limit is a whole number",
    )


@pytest.mark.parametrize(
    ("limit", "error"),
    [
        ("-1", "at least 0"),
        ("lots", "not a number"),
        ("nan", "at least 0"),
        ("0.0000001", "6 decimal places"),
        ("1e12", "less than"),
    ],
)
@pytest.mark.django_db
def test_it_rejects_a_bad_limit(acme, limit, error):
    assert_fails("--tenant", "acme", "--metric", "cost", "--period", "day", f"--limit={limit}", match=error)


@pytest.mark.django_db
def test_it_rejects_an_unknown_metric_or_period(acme):
    assert_fails(
        "--tenant",
        "acme",
        "--metric",
        "bytes",
        "--period",
        "day",
        "--limit",
        "1",
        match="invalid choice: 'bytes'",
    )
    assert_fails(
        "--tenant",
        "acme",
        "--metric",
        "requests",
        "--period",
        "week",
        "--limit",
        "1",
        match="invalid choice: 'week'",
    )


@pytest.mark.django_db
def test_it_requires_a_tenant_metric_period_and_limit(acme):
    assert_fails("--metric", "requests", "--period", "day", "--limit", "1", match="required: --tenant")
    assert_fails("--tenant", "acme", "--period", "day", "--limit", "1", match="required: --metric")
    assert_fails("--tenant", "acme", "--metric", "requests", "--limit", "1", match="required: --period")
    assert_fails("--tenant", "acme", "--metric", "requests", "--period", "day", match="required: --limit")


@pytest.mark.django_db
def test_it_rejects_an_unknown_tenant(acme):
    assert_fails(
        "--tenant",
        "nope",
        "--metric",
        "requests",
        "--period",
        "day",
        "--limit",
        "1",
        match="unknown tenant 'nope'",
    )


@pytest.mark.django_db
def test_it_rejects_a_key_of_another_tenant(acme, globex_key):
    assert_fails(
        "--tenant",
        "acme",
        "--key",
        globex_key.prefix,
        "--metric",
        "requests",
        "--period",
        "day",
        "--limit",
        "1",
        match=f"unknown API key {globex_key.prefix} in tenant acme",
    )


@pytest.mark.django_db
def test_it_rejects_a_user_of_another_tenant(acme, globex_admin):
    assert_fails(
        "--tenant",
        "acme",
        "--user",
        "charlie",
        "--metric",
        "requests",
        "--period",
        "day",
        "--limit",
        "1",
        match="unknown user 'charlie' in tenant acme",
    )


@pytest.mark.django_db
def test_it_rejects_a_malformed_key_prefix(acme):
    assert_fails(
        "--tenant",
        "acme",
        "--key",
        "lp-nope",
        "--metric",
        "requests",
        "--period",
        "day",
        "--limit",
        "1",
        match="malformed key prefix",
    )


@pytest.mark.django_db
def test_a_limit_is_for_a_key_or_a_user_not_both(acme, acme_key, acme_user):
    assert_fails(
        "--tenant",
        "acme",
        "--key",
        acme_key.prefix,
        "--user",
        "bob",
        "--metric",
        "requests",
        "--period",
        "day",
        "--limit",
        "1",
        match="not allowed with argument",
    )
