import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditLog
from keys import secrets
from keys.models import ApiKey
from providers.models import ModelRoute, Provider
from tenants.models import Tenant

KEY_LINE = re.compile(r"^lp-[A-Za-z0-9]{8}-[A-Za-z0-9]{32,}$", re.MULTILINE)


def run():
    out = StringIO()
    call_command("bootstrap_demo", stdout=out, stderr=StringIO())
    return out.getvalue()


def counts():
    return [m.objects.count() for m in (Tenant, Provider, ModelRoute, ApiKey, AuditLog)]


@pytest.fixture(autouse=True)
def default_port(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)


@pytest.mark.django_db
def test_the_first_run_creates_the_demo_tenant_provider_route_and_key():
    run()

    tenant = Tenant.objects.get(slug="demo")
    provider = Provider.objects.get(name="mock")
    assert (provider.kind, provider.tenant, provider.options, provider.base_url) == ("mock", None, {}, "")
    route = ModelRoute.objects.get(model="demo-model")
    assert (route.provider, route.upstream_model, route.tenant) == (provider, "mock-1", None)
    api_key = ApiKey.objects.get()
    assert (api_key.tenant, api_key.name) == (tenant, "demo")


@pytest.mark.django_db
def test_the_first_run_prints_a_working_key_and_a_curl_example():
    output = run()

    [key] = KEY_LINE.findall(output)
    assert secrets.digest_matches(key, ApiKey.objects.get().digest)
    assert "curl http://127.0.0.1:8000/v1/chat/completions" in output
    assert f"Authorization: Bearer {key}" in output
    assert '"model": "demo-model"' in output


@pytest.mark.django_db
def test_the_curl_example_uses_the_port_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORT", "9123")

    assert "curl http://127.0.0.1:9123/v1/chat/completions" in run()


@pytest.mark.django_db
def test_every_creation_is_audited():
    run()

    assert sorted(AuditLog.objects.values_list("action", flat=True)) == [
        "api_key.create",
        "model_route.create",
        "provider.create",
        "tenant.create",
    ]
    assert set(AuditLog.objects.values_list("actor_label", flat=True)) == {"command"}


@pytest.mark.django_db
def test_later_runs_create_nothing_and_print_no_key():
    run()
    before = counts()

    output = run()

    assert counts() == before
    assert not KEY_LINE.search(output)
    assert "demo API key" in output and "exists" in output
    assert "python manage.py create_api_key --tenant demo" in output


@pytest.mark.django_db
def test_it_completes_a_partial_set_up_without_duplicating_it():
    Tenant.objects.create(slug="demo", name="Mine")
    Provider.objects.create(name="mock", kind="mock", options={"latency_ms": 5})

    run()

    assert Tenant.objects.get(slug="demo").name == "Mine"
    assert Provider.objects.get(name="mock").options == {"latency_ms": 5}
    assert ModelRoute.objects.filter(model="demo-model").count() == 1
    assert ApiKey.objects.filter(name="demo").count() == 1


@pytest.mark.django_db
def test_a_revoked_demo_key_is_replaced_on_the_next_run():
    run()
    ApiKey.objects.update(revoked_at=timezone.now())

    output = run()

    [key] = KEY_LINE.findall(output)
    fresh = ApiKey.objects.get(revoked_at__isnull=True)
    assert secrets.digest_matches(key, fresh.digest)
