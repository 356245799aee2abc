from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditLog
from providers.models import ModelRoute, Provider


def run(*args):
    out = StringIO()
    call_command("create_model_route", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def assert_fails(*args, match):
    before = (ModelRoute.objects.count(), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (ModelRoute.objects.count(), AuditLog.objects.count()) == before


@pytest.fixture
def shared_openai(db):
    return Provider.objects.create(name="openai", kind="openai", base_url="https://api.openai.com/v1")


@pytest.fixture
def acme_openai(acme):
    return Provider.objects.create(
        name="openai", kind="openai", base_url="https://acme.example.com/v1", tenant=acme
    )


@pytest.fixture
def globex_ollama(globex):
    return Provider.objects.create(
        name="ollama", kind="ollama", base_url="http://localhost:11434/v1", tenant=globex
    )


@pytest.mark.django_db
def test_it_creates_a_shared_route_and_audits_it(shared_openai):
    output = run(
        "gpt-4o",
        "--provider",
        "openai",
        "--upstream-model",
        "gpt-4o-2024-08-06",
        "--priority",
        "2",
        "--weight",
        "3",
        "--input-price",
        "2.5",
        "--output-price",
        "10",
    )

    assert output == "created route gpt-4o -> openai:gpt-4o-2024-08-06 (shared, priority 2, weight 3)\n"
    route = ModelRoute.objects.get(model="gpt-4o")
    assert (route.provider, route.tenant, route.upstream_model) == (shared_openai, None, "gpt-4o-2024-08-06")
    assert (route.priority, route.weight) == (2, 3)
    assert (route.input_price, route.output_price) == (Decimal("2.5"), Decimal("10"))
    audit = AuditLog.objects.get(action="model_route.create")
    assert (audit.actor_label, audit.target_id) == ("command", str(route.pk))


@pytest.mark.django_db
def test_defaults_are_priority_0_weight_1_and_no_price(shared_openai):
    run("gpt-4o", "--provider", "openai", "--upstream-model", "gpt-4o")

    route = ModelRoute.objects.get()
    assert (route.priority, route.weight, route.input_price, route.output_price) == (0, 1, 0, 0)


@pytest.mark.django_db
def test_a_tenant_route_prefers_the_tenants_own_provider(shared_openai, acme_openai):
    output = run("gpt-4o", "--provider", "openai", "--upstream-model", "gpt-4o", "--tenant", "acme")

    route = ModelRoute.objects.get()
    assert (route.provider, route.tenant) == (acme_openai, acme_openai.tenant)
    assert "for tenant acme" in output
    assert AuditLog.objects.get(action="model_route.create").tenant == acme_openai.tenant


@pytest.mark.django_db
def test_a_tenant_route_may_use_a_shared_provider(acme, shared_openai):
    run("gpt-4o", "--provider", "openai", "--upstream-model", "gpt-4o", "--tenant", "acme")

    assert ModelRoute.objects.get().provider == shared_openai


@pytest.mark.django_db
def test_a_model_may_have_several_routes(shared_openai):
    run("gpt-4o", "--provider", "openai", "--upstream-model", "gpt-4o")
    run("gpt-4o", "--provider", "openai", "--upstream-model", "gpt-4o-mini", "--priority", "1")

    assert ModelRoute.objects.filter(model="gpt-4o").count() == 2


@pytest.mark.django_db
def test_it_rejects_an_unknown_provider(shared_openai):
    assert_fails(
        "gpt-4o", "--provider", "azure", "--upstream-model", "gpt-4o", match="unknown provider 'azure'"
    )


@pytest.mark.django_db
def test_a_shared_route_needs_a_shared_provider(acme_openai):
    assert_fails(
        "gpt-4o",
        "--provider",
        "openai",
        "--upstream-model",
        "gpt-4o",
        match="a shared route needs a shared provider",
    )


@pytest.mark.django_db
def test_a_tenant_cannot_route_to_another_tenants_provider(acme, globex_ollama):
    assert_fails(
        "llama",
        "--provider",
        "ollama",
        "--upstream-model",
        "llama3",
        "--tenant",
        "acme",
        match="unknown provider 'ollama'",
    )


@pytest.mark.django_db
def test_it_rejects_an_unknown_tenant(shared_openai):
    assert_fails(
        "gpt-4o",
        "--provider",
        "openai",
        "--upstream-model",
        "gpt-4o",
        "--tenant",
        "nope",
        match="unknown tenant 'nope'",
    )


@pytest.mark.django_db
def test_it_rejects_a_duplicate_route(shared_openai):
    run("gpt-4o", "--provider", "openai", "--upstream-model", "gpt-4o")

    assert_fails(
        "gpt-4o",
        "--provider",
        "openai",
        "--upstream-model",
        "gpt-4o",
        "--priority",
        "5",
        match="already exists in the shared scope",
    )


@pytest.mark.django_db
def test_it_requires_the_provider_and_the_upstream_model(shared_openai):
    assert_fails("gpt-4o", "--provider", "openai", match="required: --upstream-model")
    assert_fails("gpt-4o", "--upstream-model", "gpt-4o", match="required: --provider")


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("--priority", "-1", "between 0 and"),
        ("--priority", "first", "not a whole number"),
        ("--weight", "0", "between 1 and"),
        ("--input-price", "-0.5", "at least 0"),
        ("--input-price", "free", "not a number"),
        ("--output-price", "0.0000001", "at most 6 decimal places"),
        ("--output-price", "1000000", "below 1000000"),
    ],
)
@pytest.mark.django_db
def test_it_rejects_a_bad_number(shared_openai, option, value, error):
    assert_fails("gpt-4o", "--provider", "openai", "--upstream-model", "gpt-4o", option, value, match=error)


@pytest.mark.parametrize("model", ["gpt 4o", "", "x" * 201])
@pytest.mark.django_db
def test_it_rejects_a_malformed_model_name(shared_openai, model):
    assert_fails(model, "--provider", "openai", "--upstream-model", "gpt-4o", match="model name")
