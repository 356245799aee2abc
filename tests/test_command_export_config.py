"""manage.py export_config: the set-up as a config file that apply_config reads back without a change."""

from decimal import Decimal
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from keys.services import api_key_create, api_key_revoke
from providers.models import ModelPolicy, ModelRoute, Provider
from quotas.models import QuotaLimit
from tenants.models import Guardrail, Tenant

pytestmark = pytest.mark.django_db


def export(*args):
    out = StringIO()
    call_command("export_config", *args, stdout=out)
    return out.getvalue()


def apply(tmp_path, text, *args):
    path = tmp_path / "exported.yaml"
    path.write_text(text)
    out = StringIO()
    call_command("apply_config", str(path), *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def setup(acme, globex, acme_user):
    """A set-up with every kind of object and the awkward cases: made without the config file."""
    acme.cache_ttl_seconds, acme.allowed_models, acme.redis_down_policy = 300, ["gpt-4o"], "open"
    acme.save()
    openai = Provider.objects.create(
        name="openai",
        kind="openai",
        base_url="https://api.openai.com/v1",
        api_key_env="OPENAI_API_KEY",
        extra_headers={"OpenAI-Organization": "org-1"},
        timeout_seconds=12.5,
    )
    azure = Provider.objects.create(
        name="azure",
        kind="azure",
        base_url="https://acme.openai.azure.com",
        api_version="2024-06-01",
        tenant=acme,
        options={"deployments": {"gpt-4o": "prod-4o"}},
        is_active=False,
    )
    azure.set_api_key("sk-azure-stored-secret")
    azure.save()
    mock = Provider.objects.create(
        name="mock", kind="mock", tenant=globex, options={"latency_ms": 5}, first_byte_timeout_seconds=1.5
    )
    ModelRoute.objects.create(
        model="gpt-4o",
        provider=openai,
        upstream_model="gpt-4o",
        input_price=Decimal("2.123456"),
        output_price=Decimal("999999.999999"),
    )
    ModelRoute.objects.create(
        model="gpt-4o",
        provider=azure,
        upstream_model="prod-4o",
        tenant=acme,
        priority=1,
        weight=3,
        is_active=False,
    )
    ModelRoute.objects.create(model="yes", provider=mock, upstream_model="1.0", tenant=globex)
    backend, _ = api_key_create(tenant=acme, name="backend", allowed_models=["gpt-4o"])
    unnamed, _ = api_key_create(tenant=acme)
    old, _ = api_key_create(tenant=acme, name="old")
    api_key_revoke(api_key=old)
    QuotaLimit.objects.create(tenant=acme, metric="requests", period="minute", limit=600)
    QuotaLimit.objects.create(
        tenant=acme,
        scope="key",
        api_key=backend,
        metric="cost",
        period="month",
        limit=Decimal("123456789012.123456"),
    )
    QuotaLimit.objects.create(
        tenant=acme, scope="key", api_key=unnamed, metric="tokens", period="day", limit=5
    )
    QuotaLimit.objects.create(
        tenant=acme, scope="user", user=acme_user, metric="tokens", period="hour", limit=1000
    )
    ModelPolicy.objects.create(
        model="gpt-4o", strategy="weighted", fallback_models=["gpt-4o-mini"], deadline_seconds=12.5
    )
    ModelPolicy.objects.create(model="gpt-4o", tenant=acme, strategy="least_latency", max_attempts=2)
    codenames = Guardrail.objects.create(
        tenant=acme,
        name="codenames",
        detector="regex",
        pattern=r"project-\w+",
        action="mask",
        models=["gpt-4o"],
    )
    codenames.api_keys.add(backend)
    Guardrail.objects.create(
        tenant=globex, name="rude", detector="wordlist", words=["darn"], shadow=True, is_active=False
    )
    return {"unnamed": unnamed}


def test_an_export_applied_back_reports_no_change(tmp_path, setup):
    text = export()

    assert apply(tmp_path, text, "--dry-run") == "no changes\n"
    assert apply(tmp_path, text, "--dry-run", "--prune") == "no changes\n"


def test_an_export_of_one_tenant_applied_back_to_that_tenant_reports_no_change(tmp_path, setup):
    text = export("--tenant", "acme")

    assert "globex" not in text and "name: openai" not in text
    assert apply(tmp_path, text, "--dry-run", "--tenant", "acme", "--prune") == "no changes\n"


def test_it_writes_every_setting_as_the_file_format_describes(setup):
    config = yaml.safe_load(export())

    acme = next(t for t in config["tenants"] if t["slug"] == "acme")
    assert acme["cache_ttl_seconds"] == 300 and acme["redis_down_policy"] == "open"
    assert acme["api_keys"] == [{"name": "backend", "models": ["gpt-4o"]}]  # neither revoked nor unnamed keys
    openai = next(p for p in config["providers"] if p["name"] == "openai")
    assert openai == {
        "name": "openai",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OPENAI_API_KEY",
        "extra_headers": {"OpenAI-Organization": "org-1"},
        "timeout_seconds": 12.5,
        "connect_timeout_seconds": 5.0,
        "active": True,
    }
    route = next(r for r in config["routes"] if r["provider"] == "openai")
    assert (route["input_price"], route["output_price"]) == (2.123456, 999999.999999)
    assert next(r for r in config["routes"] if r["model"] == "yes")["upstream_model"] == "1.0"
    cost = next(q for q in config["quotas"] if q["metric"] == "cost")
    assert {k: v for k, v in cost.items() if k != "limit"} == {
        "tenant": "acme",
        "scope": "key",
        "key": "backend",
        "metric": "cost",
        "period": "month",
    }
    # Exactly what the database holds (SQLite keeps a float's precision, PostgreSQL all 18 digits).
    assert Decimal(str(cost["limit"])) == QuotaLimit.objects.get(metric="cost").limit


def test_it_writes_guardrails_model_policies_and_first_byte_timeouts(setup):
    config = yaml.safe_load(export())

    assert next(p for p in config["providers"] if p["name"] == "mock")["first_byte_timeout_seconds"] == 1.5
    assert "first_byte_timeout_seconds" not in next(p for p in config["providers"] if p["name"] == "openai")
    assert config["model_policies"] == [
        {
            "model": "gpt-4o",
            "strategy": "weighted",
            "fallback_models": ["gpt-4o-mini"],
            "max_attempts": 1,
            "deadline_seconds": 12.5,
        },
        {"model": "gpt-4o", "strategy": "least_latency", "max_attempts": 2, "tenant": "acme"},
    ]
    assert config["guardrails"] == [
        {
            "tenant": "acme",
            "name": "codenames",
            "detector": "regex",
            "pattern": r"project-\w+",
            "direction": "both",
            "action": "mask",
            "shadow": False,
            "models": ["gpt-4o"],
            "api_keys": ["backend"],
            "active": True,
        },
        {
            "tenant": "globex",
            "name": "rude",
            "detector": "wordlist",
            "words": ["darn"],
            "direction": "both",
            "action": "flag",
            "shadow": True,
            "active": False,
        },
    ]


def test_a_guardrail_on_a_key_without_a_name_is_left_out_with_a_comment(tmp_path, setup, acme):
    guardrail = Guardrail.objects.create(tenant=acme, name="scoped", detector="email")
    guardrail.api_keys.add(setup["unnamed"])

    text = export()

    assert (
        f"# not exported: the guardrail scoped of tenant acme, on the key {setup['unnamed'].prefix}, which "
        "has no name of its own to refer to it by"
    ) in text
    assert "name: scoped" not in text
    assert apply(tmp_path, text, "--dry-run", "--prune") == "no changes\n"


def test_a_stored_credential_is_left_out_with_a_comment_saying_so(setup):
    text = export()

    assert "sk-azure-stored-secret" not in text and "api_key:" not in text
    assert "encrypted_api_key" not in text
    lines = text.splitlines()
    azure_at = lines.index("  - name: azure")
    assert lines[azure_at - 2 : azure_at] == [
        "  # A credential of this provider is stored (encrypted) in the database:",
        "  # the file does not carry it, and apply_config leaves it as it is.",
    ]


def test_a_quota_on_a_key_without_a_name_is_left_out_with_a_comment(setup):
    text = export()

    assert (
        f"# not exported: a quota on the key {setup['unnamed'].prefix} of tenant acme, which has no name "
        "of its own to refer to it by"
    ) in text


def test_an_export_rebuilds_the_same_set_up_on_an_empty_database(tmp_path, setup):
    text = export()
    Provider.objects.all().delete()
    QuotaLimit.objects.all().delete()
    Tenant.objects.filter(slug="globex").delete()

    output = apply(tmp_path, text)

    assert "create tenant globex" in output and "create provider azure (tenant acme)" in output
    assert "prefix:" not in output  # acme's key 'backend' still exists
    # Only what the file cannot carry differs: the stored credential, the unnamed key's quota.
    credential_comment = (
        "  # A credential of this provider is stored (encrypted) in the database:\n"
        "  # the file does not carry it, and apply_config leaves it as it is.\n"
    )
    assert export() == text.replace(credential_comment, "").replace(
        f"# not exported: a quota on the key {setup['unnamed'].prefix} of tenant acme, which has no name "
        "of its own to refer to it by\n",
        "",
    )


def test_an_empty_database_exports_a_file_that_applies_cleanly(tmp_path, db):
    text = export()

    assert yaml.safe_load(text) == {
        "version": 1,
        "tenants": [],
        "providers": [],
        "routes": [],
        "quotas": [],
        "model_policies": [],
        "guardrails": [],
    }
    assert apply(tmp_path, text, "--prune") == "no changes\n"


def test_two_identical_routes_are_exported_once_with_a_comment(tmp_path, acme):
    provider = Provider.objects.create(name="p", kind="mock")
    for _ in range(2):
        ModelRoute.objects.create(model="m", provider=provider, upstream_model="mock-1")

    text = export()

    assert "another route exactly like this one exists" in text
    assert apply(tmp_path, text, "--dry-run") == "no changes\n"


def test_an_unknown_tenant_is_refused(db):
    with pytest.raises(CommandError, match="unknown tenant 'initech'"):
        export("--tenant", "initech")
