"""manage.py apply_config: the database made to match a YAML file, idempotently, in one transaction."""

import io
import textwrap
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditLog
from keys import secrets
from keys.models import ApiKey
from keys.services import api_key_create
from providers.models import ModelPolicy, ModelRoute, Provider
from quotas.models import QuotaLimit
from tenants.models import Guardrail, Tenant

pytestmark = pytest.mark.django_db

FULL = """\
version: 1
tenants:
  - slug: acme
    name: Acme
    cache_ttl_seconds: 60
    allowed_models: [gpt-4o, llama]
    api_keys:
      - name: backend
        models: [gpt-4o]
        expires_in: 90d
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    timeout_seconds: 30
  - name: local
    kind: ollama
    base_url: http://ollama:11434/v1
    tenant: acme
routes:
  - model: gpt-4o
    provider: openai
    upstream_model: gpt-4o-2024-08-06
    input_price: 2.5
    output_price: 10
  - model: llama
    provider: local
    upstream_model: llama3.1:8b
    tenant: acme
quotas:
  - tenant: acme
    metric: requests
    period: minute
    limit: 600
  - tenant: acme
    scope: key
    key: backend
    metric: cost
    period: month
    limit: 12.5
"""


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def apply(path, *args):
    out = StringIO()
    call_command("apply_config", path, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def snapshot():
    """Everything apply_config may write, to prove a refused or dry run wrote nothing."""
    return [
        list(model.objects.order_by("pk").values())
        for model in (
            Tenant,
            Provider,
            ModelRoute,
            QuotaLimit,
            ApiKey,
            AuditLog,
            ModelPolicy,
            Guardrail,
            Guardrail.api_keys.through,
        )
    ]


def refused(tmp_path, text, *args):
    path = write(tmp_path, text)
    before = snapshot()
    with pytest.raises(CommandError) as failure:
        apply(path, *args)
    assert failure.value.returncode != 0
    assert snapshot() == before
    return str(failure.value)


# --- applying ------------------------------------------------------------------------


def test_it_creates_everything_the_file_describes(tmp_path):
    output = apply(write(tmp_path, FULL))

    acme = Tenant.objects.get(slug="acme")
    assert (acme.name, acme.cache_ttl_seconds, acme.allowed_models) == ("Acme", 60, ["gpt-4o", "llama"])
    openai = Provider.objects.get(name="openai", tenant=None)
    assert (openai.kind, openai.api_key_env, openai.timeout_seconds) == ("openai", "OPENAI_API_KEY", 30.0)
    local = Provider.objects.get(name="local", tenant=acme)
    assert local.base_url == "http://ollama:11434/v1"
    route = ModelRoute.objects.get(model="gpt-4o")
    assert (route.provider, route.tenant, route.upstream_model) == (openai, None, "gpt-4o-2024-08-06")
    assert (route.input_price, route.output_price) == (Decimal("2.5"), Decimal("10"))
    assert ModelRoute.objects.get(model="llama").provider == local
    key = ApiKey.objects.get(tenant=acme, name="backend")
    assert key.allowed_models == ["gpt-4o"] and key.expires_at is not None
    assert QuotaLimit.objects.get(tenant=acme, scope="tenant").limit == 600
    assert QuotaLimit.objects.get(tenant=acme, scope="key").api_key == key

    lines = output.splitlines()
    assert lines[:6] == [
        "create tenant acme",
        "create provider openai (shared)",
        "create provider local (tenant acme)",
        "create route gpt-4o -> openai:gpt-4o-2024-08-06 (shared)",
        "create route llama -> local:llama3.1:8b (tenant acme)",
        "create API key backend (tenant acme)",
    ]
    assert lines[6] == f"prefix: {key.prefix}"
    assert secrets.digest_matches(lines[7], key.digest)
    assert lines[8:] == [
        "create quota tenant requests/minute (tenant acme)",
        "create quota key backend cost/month (tenant acme)",
        "8 created, 0 changed, 0 deleted",
    ]


def test_every_object_it_creates_is_audited_as_a_config_change_without_secrets(tmp_path):
    output = apply(write(tmp_path, FULL))

    rows = AuditLog.objects.order_by("id")
    assert [row.action for row in rows] == [
        "tenant.create",
        "provider.create",
        "provider.create",
        "model_route.create",
        "model_route.create",
        "api_key.create",
        "quota_limit.create",
        "quota_limit.create",
    ]
    assert {row.actor_label for row in rows} == {"config"}
    provider_row = rows.filter(action="provider.create").first()
    assert provider_row.metadata["changed"]["api_key_env"] == [None, "OPENAI_API_KEY"]
    assert provider_row.target_id == str(Provider.objects.get(name="openai").pk)
    route_row = rows.filter(action="model_route.create").first()
    assert route_row.metadata["changed"]["input_price"] == [None, "2.5"]
    plain_key = output.splitlines()[7]
    assert all(plain_key not in str(row.metadata) for row in rows)


def test_applying_the_same_file_again_changes_nothing_and_says_so(tmp_path):
    path = write(tmp_path, FULL)
    apply(path)
    before = snapshot()

    assert apply(path) == "no changes\n"
    assert snapshot() == before


def test_it_prints_each_changed_field_with_its_old_and_new_value(tmp_path):
    apply(write(tmp_path, FULL))
    route_id = ModelRoute.objects.get(model="gpt-4o").pk
    changed = (
        FULL.replace("cache_ttl_seconds: 60", "cache_ttl_seconds: 120")
        .replace("upstream_model: gpt-4o-2024-08-06", "upstream_model: gpt-4o-mini")
        .replace("output_price: 10", "output_price: 12.25")
    )

    output = apply(write(tmp_path, changed))

    assert output.splitlines() == [
        "update tenant acme",
        "  cache_ttl_seconds: 60 -> 120",
        "update route gpt-4o -> openai:gpt-4o-2024-08-06 (shared)",
        "  upstream_model: gpt-4o-2024-08-06 -> gpt-4o-mini",
        "  output_price: 10 -> 12.25",
        "0 created, 2 changed, 0 deleted",
    ]
    route = ModelRoute.objects.get(model="gpt-4o")
    assert route.pk == route_id  # the same route, changed in place: its id and history stay
    assert (route.upstream_model, route.output_price) == ("gpt-4o-mini", Decimal("12.25"))
    audit = AuditLog.objects.get(action="model_route.update")
    assert audit.metadata == {
        "changed": {"upstream_model": ["gpt-4o-2024-08-06", "gpt-4o-mini"], "output_price": ["10", "12.25"]}
    }
    assert AuditLog.objects.get(action="tenant.update").metadata == {
        "changed": {"cache_ttl_seconds": [60, 120]}
    }


def test_a_field_left_out_of_an_entry_goes_back_to_its_default(tmp_path):
    apply(write(tmp_path, FULL))

    output = apply(write(tmp_path, FULL.replace("    timeout_seconds: 30\n", "")))

    assert "  timeout_seconds: 30.0 -> 60.0" in output.splitlines()
    assert Provider.objects.get(name="openai").timeout_seconds == 60.0


def test_a_second_route_of_one_model_and_provider_is_added_beside_the_first(tmp_path):
    apply(write(tmp_path, FULL))
    fallback = """\
  - model: gpt-4o
    provider: openai
    upstream_model: gpt-4o-mini
    priority: 1
"""
    output = apply(write(tmp_path, FULL.replace("quotas:\n", fallback + "quotas:\n")))

    assert "create route gpt-4o -> openai:gpt-4o-mini (shared)" in output
    assert sorted(ModelRoute.objects.filter(model="gpt-4o").values_list("upstream_model", flat=True)) == [
        "gpt-4o-2024-08-06",
        "gpt-4o-mini",
    ]


def test_it_reads_the_file_from_standard_input(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("tenants:\n  - slug: stdin-co\n"))

    assert apply("-") == "create tenant stdin-co\n1 created, 0 changed, 0 deleted\n"


def test_a_stored_credential_is_kept_when_the_file_names_no_variable(tmp_path):
    apply(write(tmp_path, FULL))
    provider = Provider.objects.get(name="local")
    provider.set_api_key("sk-stored-in-db")
    provider.save()

    assert apply(write(tmp_path, FULL)) == "no changes\n"
    provider.refresh_from_db()
    assert provider.get_api_key() == "sk-stored-in-db"


def test_the_example_file_applies_and_applying_it_again_changes_nothing(acme_user):
    example = str(Path(__file__).resolve().parent.parent / "config.example.yaml")

    output = apply(example)

    assert output.count("prefix: lp-") == 2
    assert Provider.objects.get(name="azure-acme").api_version == "2024-06-01"
    assert QuotaLimit.objects.get(scope="user").user == acme_user
    assert apply(example) == "no changes\n"


def test_yaml_anchors_and_merge_keys_can_share_settings(tmp_path):
    apply(
        write(
            tmp_path,
            """\
            providers:
              - &slow
                name: one
                kind: mock
                timeout_seconds: 300
              - <<: *slow
                name: two
            """,
        )
    )

    assert list(Provider.objects.values_list("name", "timeout_seconds")) == [("one", 300.0), ("two", 300.0)]


# --- API keys ------------------------------------------------------------------------


def test_a_key_is_created_only_when_no_key_of_that_name_exists_in_the_tenant(tmp_path, acme):
    existing, _ = api_key_create(tenant=acme, name="backend")

    output = apply(write(tmp_path, FULL))

    assert "API key backend" not in output and "prefix:" not in output
    assert list(ApiKey.objects.filter(tenant=acme, name="backend")) == [existing]
    assert QuotaLimit.objects.get(scope="key").api_key == existing


def test_a_revoked_key_of_that_name_is_not_made_again(tmp_path, acme):
    existing, _ = api_key_create(tenant=acme, name="backend")
    call_command("revoke_api_key", existing.prefix, stdout=StringIO())

    assert "prefix:" not in apply(write(tmp_path, FULL))
    assert ApiKey.objects.filter(tenant=acme, name="backend").count() == 1


def test_a_quota_names_its_user_by_username(tmp_path, acme_user):
    output = apply(
        write(
            tmp_path,
            """\
            quotas:
              - tenant: acme
                scope: user
                user: bob
                metric: tokens
                period: day
                limit: 100000
            """,
        )
    )

    assert output.splitlines()[0] == "create quota user bob tokens/day (tenant acme)"
    assert QuotaLimit.objects.get().user == acme_user


# --- prune ---------------------------------------------------------------------------

SMALL = """\
tenants:
  - slug: acme
providers:
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1
routes:
  - model: gpt-4o
    provider: openai
    upstream_model: gpt-4o
quotas: []
"""


def test_without_prune_objects_the_file_does_not_describe_are_left_alone(tmp_path):
    apply(write(tmp_path, FULL))
    before = snapshot()

    output = apply(write(tmp_path, SMALL))

    assert not [line for line in output.splitlines() if line.startswith("delete")]
    assert Provider.objects.filter(name="local").exists()
    assert QuotaLimit.objects.count() == 2
    assert len(snapshot()[1]) == len(before[1])


def test_prune_deletes_the_providers_routes_and_quotas_the_file_does_not_describe(tmp_path):
    apply(write(tmp_path, FULL))

    output = apply(write(tmp_path, SMALL), "--prune")

    assert sorted(line for line in output.splitlines() if line.startswith("delete")) == [
        "delete provider local (tenant acme)",
        "delete quota key backend cost/month (tenant acme)",
        "delete quota tenant requests/minute (tenant acme)",
        "delete route llama -> local:llama3.1:8b (tenant acme)",
    ]
    # The file's gpt-4o route on openai took over the one there was, with its new upstream model.
    assert "  upstream_model: gpt-4o-2024-08-06 -> gpt-4o" in output
    assert list(Provider.objects.values_list("name", flat=True)) == ["openai"]
    assert list(ModelRoute.objects.values_list("upstream_model", flat=True)) == ["gpt-4o"]
    assert not QuotaLimit.objects.exists()
    deleted = AuditLog.objects.filter(action="provider.delete").get()
    assert deleted.metadata["changed"]["base_url"] == ["http://ollama:11434/v1", None]
    assert apply(write(tmp_path, SMALL), "--prune") == "no changes\n"


def test_prune_never_deletes_tenants_or_api_keys(tmp_path, globex):
    apply(write(tmp_path, FULL))

    apply(write(tmp_path, "tenants: []\nproviders: []\nroutes: []\nquotas: []\n"), "--prune")

    assert set(Tenant.objects.values_list("slug", flat=True)) == {"acme", "globex"}
    assert ApiKey.objects.filter(name="backend").exists()
    assert not Provider.objects.exists() and not ModelRoute.objects.exists()


def test_prune_leaves_alone_the_kinds_the_file_has_no_section_for(tmp_path):
    apply(write(tmp_path, FULL))

    output = apply(
        write(
            tmp_path,
            "tenants:\n  - slug: acme\n    name: Acme\n    cache_ttl_seconds: 60\n"
            "    allowed_models: [gpt-4o, llama]\n",
        ),
        "--prune",
    )

    assert output == "no changes\n"
    assert (Provider.objects.count(), ModelRoute.objects.count(), QuotaLimit.objects.count()) == (2, 2, 2)


def test_pruning_a_provider_deletes_its_routes_too_even_when_routes_are_not_managed(tmp_path):
    apply(write(tmp_path, FULL))
    providers_only = FULL.split("routes:")[0].replace(
        "  - name: local\n    kind: ollama\n    base_url: http://ollama:11434/v1\n    tenant: acme\n", ""
    )

    output = apply(write(tmp_path, providers_only), "--prune")

    assert "delete route llama -> local:llama3.1:8b (tenant acme) (its provider is deleted)" in output
    assert AuditLog.objects.filter(action="model_route.delete").count() == 1
    assert list(ModelRoute.objects.values_list("model", flat=True)) == ["gpt-4o"]


# --- dry run -------------------------------------------------------------------------


def test_a_dry_run_prints_what_it_would_do_and_writes_nothing(tmp_path):
    path = write(tmp_path, FULL)
    before = snapshot()

    output = apply(path, "--dry-run")

    assert snapshot() == before
    assert output.splitlines()[0] == "create tenant acme"
    assert "create API key backend (tenant acme)" in output
    assert "prefix:" not in output  # no key is made, so none is shown
    assert output.splitlines()[-1] == "dry run, nothing written: would have 8 created, 0 changed, 0 deleted"


def test_a_dry_run_prints_changes_and_deletions_and_writes_nothing(tmp_path):
    apply(write(tmp_path, FULL))
    before = snapshot()

    output = apply(
        write(tmp_path, SMALL.replace("upstream_model: gpt-4o", "upstream_model: gpt-4.1")),
        "--dry-run",
        "--prune",
    )

    assert "  upstream_model: gpt-4o-2024-08-06 -> gpt-4.1" in output
    assert "delete provider local (tenant acme)" in output
    assert snapshot() == before


# --- --tenant ------------------------------------------------------------------------

TWO_TENANTS = """\
tenants:
  - slug: acme
    name: Acme
    cache_ttl_seconds: 30
  - slug: globex
    name: Globex
    cache_ttl_seconds: 30
providers:
  - name: shared-up
    kind: mock
  - name: acme-up
    kind: mock
    tenant: acme
  - name: globex-up
    kind: mock
    tenant: globex
routes:
  - model: m1
    provider: acme-up
    upstream_model: mock-1
    tenant: acme
  - model: m1
    provider: globex-up
    upstream_model: mock-1
    tenant: globex
quotas: []
"""


def test_with_tenant_only_that_tenants_entries_are_applied(tmp_path, acme, globex):
    output = apply(write(tmp_path, TWO_TENANTS), "--tenant", "acme")

    assert output.splitlines() == [
        "update tenant acme",
        "  cache_ttl_seconds: 0 -> 30",
        "create provider acme-up (tenant acme)",
        "create route m1 -> acme-up:mock-1 (tenant acme)",
        "left out 4 entries that are not of tenant acme",
        "2 created, 1 changed, 0 deleted",
    ]
    globex.refresh_from_db()
    assert globex.cache_ttl_seconds == 0
    assert set(Provider.objects.values_list("name", flat=True)) == {"acme-up"}


def test_with_tenant_prune_deletes_only_that_tenants_objects(tmp_path, acme, globex):
    apply(write(tmp_path, TWO_TENANTS))
    only_shared = "providers:\n  - name: shared-up\n    kind: mock\nroutes: []\nquotas: []\n"

    output = apply(write(tmp_path, only_shared), "--tenant", "acme", "--prune")

    assert [line for line in output.splitlines() if line.startswith("delete")] == [
        "delete route m1 -> acme-up:mock-1 (tenant acme)",
        "delete provider acme-up (tenant acme)",
    ]
    assert set(Provider.objects.values_list("name", flat=True)) == {"shared-up", "globex-up"}
    assert list(ModelRoute.objects.values_list("tenant__slug", flat=True)) == ["globex"]


def test_with_tenant_a_tenant_only_in_the_file_is_created(tmp_path):
    output = apply(write(tmp_path, TWO_TENANTS), "--tenant", "globex")

    assert output.splitlines()[0] == "create tenant globex"
    assert list(Tenant.objects.values_list("slug", flat=True)) == ["globex"]


def test_with_tenant_an_unknown_tenant_is_refused(tmp_path):
    message = refused(tmp_path, TWO_TENANTS, "--tenant", "initech")

    assert message == "unknown tenant 'initech' (neither in the file nor in the database)"


def test_with_tenant_a_route_on_a_shared_provider_only_in_the_file_is_refused(tmp_path, acme):
    text = TWO_TENANTS.replace("provider: acme-up", "provider: shared-up")

    message = refused(tmp_path, text, "--tenant", "acme")

    assert (
        "line 19: route m1 -> shared-up:mock-1 (tenant acme): the shared provider 'shared-up' is only in "
        "the file" in message
    )
    apply(write(tmp_path, text))  # without --tenant it applies


# --- bad files: every problem, with its line, and nothing written --------------------


def test_a_yaml_syntax_error_is_refused_with_its_line(tmp_path):
    message = refused(tmp_path, "tenants:\n  - slug: acme\n    name: [unclosed\nproviders: []\n")

    assert message.startswith(f"{tmp_path / 'config.yaml'}: 1 problem, nothing written\n")
    assert "  line 4: not valid YAML" in message


def test_an_unknown_field_is_refused_with_its_line(tmp_path):
    message = refused(tmp_path, FULL.replace("    timeout_seconds: 30\n", "    timeout: 30\n"))

    assert "line 16: provider entry 1: unknown field 'timeout' (known: name, kind, base_url" in message


def test_a_value_of_the_wrong_type_is_refused_with_its_line(tmp_path):
    message = refused(tmp_path, FULL.replace("cache_ttl_seconds: 60", "cache_ttl_seconds: soon"))

    assert "line 5: tenant entry 1: cache_ttl_seconds: expected a whole number, got 'soon'" in message


def test_a_bad_choice_is_refused_with_the_choices(tmp_path):
    message = refused(tmp_path, FULL.replace("kind: ollama", "kind: llama-server"))

    assert (
        "line 18: provider entry 2: kind: 'llama-server' is not one of openai, azure, anthropic, ollama, "
        "openai_compatible, mock" in message
    )


def test_a_literal_api_key_is_refused_with_a_clear_message(tmp_path):
    message = refused(
        tmp_path, FULL.replace("    api_key_env: OPENAI_API_KEY\n", "    api_key: sk-live-123\n")
    )

    assert (
        "line 15: provider entry 1: api_key: a credential is never written in the file: put it in an "
        "environment variable of the proxy and name that variable with api_key_env" in message
    )
    assert "sk-live-123" not in message


def test_a_credential_in_extra_headers_is_refused(tmp_path):
    text = FULL.replace("    timeout_seconds: 30\n", "    extra_headers:\n      Authorization: Bearer sk-x\n")

    message = refused(tmp_path, text)

    assert "line 17: provider entry 1: extra_headers: 'Authorization' carries a credential" in message


def test_a_reference_to_a_provider_that_exists_nowhere_is_refused(tmp_path):
    message = refused(tmp_path, FULL.replace("provider: openai", "provider: openia"))

    assert (
        "line 23: route gpt-4o -> openia:gpt-4o-2024-08-06 (shared): unknown provider 'openia' (looked in "
        "the shared providers, in the file and in the database)" in message
    )


def test_a_provider_in_the_database_can_be_referred_to(tmp_path):
    Provider.objects.create(name="openia", kind="mock")

    apply(write(tmp_path, FULL.replace("provider: openai", "provider: openia")))

    assert ModelRoute.objects.get(model="gpt-4o").provider.name == "openia"


def test_a_shared_route_on_a_tenants_provider_is_refused(tmp_path):
    message = refused(
        tmp_path,
        FULL.replace(
            "provider: local\n    upstream_model: llama3.1:8b\n    tenant: acme",
            "provider: local\n    upstream_model: llama3.1:8b",
        ),
    )

    assert (
        "line 28: route llama -> local:llama3.1:8b (shared): a shared route needs a shared provider"
        in message
    )


def test_a_reference_to_a_tenant_that_exists_nowhere_is_refused(tmp_path):
    message = refused(
        tmp_path,
        FULL.replace(
            "    limit: 600",
            "    limit: 600\n  - tenant: initech\n    metric: tokens\n    period: day\n    limit: 5",
        ),
    )

    assert (
        "line 36: quota tenant tokens/day (tenant initech): unknown tenant 'initech' (neither in the file "
        "nor in the database)" in message
    )


def test_an_unknown_key_or_user_is_refused(tmp_path, acme, globex_admin):
    message = refused(
        tmp_path,
        """\
        quotas:
          - tenant: acme
            scope: key
            key: nobody
            metric: requests
            period: day
            limit: 1
          - tenant: acme
            scope: user
            user: charlie
            metric: requests
            period: day
            limit: 1
        """,
    )

    assert (
        "line 4: quota key nobody requests/day (tenant acme): unknown API key 'nobody' in tenant acme"
        in message
    )
    assert (
        "line 10: quota user charlie requests/day (tenant acme): user 'charlie' is not in tenant acme"
        in message
    )


def test_a_duplicate_is_refused_with_the_line_of_the_first(tmp_path):
    text = FULL.replace("  - name: local\n", "  - name: openai\n    kind: mock\n  - name: local\n")

    message = refused(tmp_path, text)

    assert "line 17: duplicate provider openai (shared): first at line 12" in message


def test_a_duplicate_field_is_refused(tmp_path):
    message = refused(tmp_path, "tenants:\n  - slug: acme\n    name: A\n    name: B\n")

    assert "line 4: duplicate key 'name'" in message


def test_every_problem_of_a_file_is_listed(tmp_path):
    text = (
        FULL.replace("cache_ttl_seconds: 60", "cache_ttl_seconds: -1")
        .replace("kind: ollama", "kind: llama")
        .replace("metric: requests", "metric: calls")
        .replace("upstream_model: llama3.1:8b", "upstream: llama3.1:8b")
    )

    message = refused(tmp_path, text)

    assert message.splitlines()[0].endswith(": 5 problems, nothing written")
    assert message.splitlines()[1:] == [
        "  line 5: tenant entry 1: cache_ttl_seconds: must be between 0 and 2147483647",
        "  line 18: provider entry 2: kind: 'llama' is not one of openai, azure, anthropic, ollama, "
        "openai_compatible, mock",
        "  line 27: route entry 2: upstream_model is required",
        "  line 29: route entry 2: unknown field 'upstream' (known: model, provider, upstream_model, "
        "priority, weight, input_price, output_price, active, tenant)",
        "  line 33: quota entry 1: metric: 'calls' is not one of requests, tokens, cost",
    ]


def test_an_unknown_top_level_key_and_a_wrong_version_are_refused(tmp_path):
    message = refused(tmp_path, "version: 2\nprovider: []\n")

    assert "line 1: version: this proxy reads version 1" in message
    assert (
        "line 2: unknown key 'provider'; the file has version, tenants, providers, routes, quotas, "
        "model_policies, guardrails" in message
    )


def test_an_empty_file_is_refused(tmp_path):
    assert "line 1: the file is empty" in refused(tmp_path, "# nothing here\n")


def test_a_route_on_a_provider_that_prune_would_delete_is_refused(tmp_path):
    Provider.objects.create(name="legacy", kind="mock")
    text = "providers: []\nroutes:\n  - model: m\n    provider: legacy\n    upstream_model: mock-1\n"

    message = refused(tmp_path, text, "--prune")

    assert (
        "line 4: route m -> legacy:mock-1 (shared): provider 'legacy' is not in the file, so --prune would "
        "delete it" in message
    )
    apply(write(tmp_path, text))  # without --prune the provider stays, and the route can use it


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(CommandError, match="cannot read .*missing.yaml"):
        apply(str(tmp_path / "missing.yaml"))


# --- guardrails, model policies, a provider's first-byte timeout ----------------------

GUARDED = """\
tenants:
  - slug: acme
    api_keys:
      - name: backend
providers:
  - name: upstream
    kind: mock
    first_byte_timeout_seconds: 2.5
model_policies:
  - model: gpt-4o
    strategy: least_latency
    fallback_models: [gpt-4o-mini]
    max_attempts: 3
    deadline_seconds: 20
  - model: gpt-4o
    strategy: lowest_cost
    tenant: acme
guardrails:
  - tenant: acme
    name: no-cards
    detector: card
    direction: request
    action: block
  - tenant: acme
    name: codenames
    detector: regex
    pattern: 'project-[a-z]+'
    action: mask
    models: [gpt-4o]
    api_keys: [backend]
  - tenant: acme
    name: rude
    detector: wordlist
    words: [darn, heck]
    shadow: true
"""


def test_it_creates_guardrails_model_policies_and_a_first_byte_timeout(tmp_path):
    output = apply(write(tmp_path, GUARDED))

    acme = Tenant.objects.get(slug="acme")
    assert Provider.objects.get(name="upstream").first_byte_timeout_seconds == 2.5
    shared = ModelPolicy.objects.get(tenant=None)
    assert (shared.strategy, shared.fallback_models, shared.max_attempts, shared.deadline_seconds) == (
        "least_latency",
        ["gpt-4o-mini"],
        3,
        20.0,
    )
    assert ModelPolicy.objects.get(tenant=acme).strategy == "lowest_cost"
    codenames = Guardrail.objects.get(tenant=acme, name="codenames")
    assert (codenames.detector, codenames.pattern, codenames.action, codenames.models) == (
        "regex",
        "project-[a-z]+",
        "mask",
        ["gpt-4o"],
    )
    assert list(codenames.api_keys.all()) == [ApiKey.objects.get(tenant=acme, name="backend")]
    no_cards = Guardrail.objects.get(name="no-cards")
    assert (no_cards.direction, no_cards.action, no_cards.shadow, no_cards.is_active) == (
        "request",
        "block",
        False,
        True,
    )
    rude = Guardrail.objects.get(name="rude")
    assert (rude.words, rude.direction, rude.action, rude.shadow) == (["darn", "heck"], "both", "flag", True)
    assert [line for line in output.splitlines() if not line.startswith(("prefix:", "lp-"))] == [
        "create tenant acme",
        "create provider upstream (shared)",
        "create API key backend (tenant acme)",
        "create model policy gpt-4o (shared)",
        "create model policy gpt-4o (tenant acme)",
        "create guardrail no-cards (tenant acme)",
        "create guardrail codenames (tenant acme)",
        "create guardrail rude (tenant acme)",
        "8 created, 0 changed, 0 deleted",
    ]


def test_guardrails_are_audited_without_their_pattern_or_words(tmp_path):
    apply(write(tmp_path, GUARDED))

    codenames = Guardrail.objects.get(name="codenames")
    row = AuditLog.objects.get(action="guardrail.create", target_id=str(codenames.pk))
    assert row.actor_label == "config"
    assert row.metadata["changed"]["api_keys"] == [None, ["backend"]]
    assert row.metadata["changed"]["pattern"] == [None, "(not recorded)"]
    rude = Guardrail.objects.get(name="rude")
    words = AuditLog.objects.get(action="guardrail.create", target_id=str(rude.pk))
    assert "darn" not in str(words.metadata)
    assert AuditLog.objects.filter(action="model_policy.create", actor_label="config").count() == 2


def test_applying_guardrails_and_policies_again_changes_nothing(tmp_path):
    path = write(tmp_path, GUARDED)
    apply(path)
    before = snapshot()

    assert apply(path) == "no changes\n"
    assert snapshot() == before


def test_a_guardrail_and_a_policy_are_changed_in_place(tmp_path):
    apply(write(tmp_path, GUARDED))
    guardrail_id = Guardrail.objects.get(name="codenames").pk
    changed = (
        GUARDED.replace("    api_keys: [backend]\n", "")
        .replace("action: mask", "action: block")
        .replace("strategy: lowest_cost", "strategy: round_robin")
        .replace("    first_byte_timeout_seconds: 2.5\n", "")
    )

    output = apply(write(tmp_path, changed))

    assert output.splitlines() == [
        "update provider upstream (shared)",
        "  first_byte_timeout_seconds: 2.5 -> null",
        "update model policy gpt-4o (tenant acme)",
        "  strategy: lowest_cost -> round_robin",
        "update guardrail codenames (tenant acme)",
        "  action: mask -> block",
        '  api_keys: ["backend"] -> []',
        "0 created, 3 changed, 0 deleted",
    ]
    guardrail = Guardrail.objects.get(name="codenames")
    assert guardrail.pk == guardrail_id
    assert (guardrail.action, guardrail.api_keys.count()) == ("block", 0)
    assert AuditLog.objects.get(action="guardrail.update").metadata == {
        "changed": {"action": ["mask", "block"], "api_keys": [["backend"], []]}
    }
    assert apply(write(tmp_path, changed)) == "no changes\n"


def test_a_guardrail_can_name_a_key_that_is_already_in_the_database(tmp_path, acme):
    existing, _ = api_key_create(tenant=acme, name="batch")

    apply(write(tmp_path, GUARDED.replace("api_keys: [backend]", "api_keys: [batch, backend]")))

    keys = Guardrail.objects.get(name="codenames").api_keys
    assert set(keys.values_list("name", flat=True)) == {"batch", "backend"}
    assert existing in keys.all()


def test_prune_deletes_the_guardrails_and_policies_the_file_does_not_describe(tmp_path):
    apply(write(tmp_path, GUARDED))
    kept = GUARDED.split("guardrails:")[0].split("  - model: gpt-4o\n    strategy: lowest_cost")[0]

    output = apply(
        write(
            tmp_path,
            kept + "guardrails:\n  - tenant: acme\n    name: rude\n"
            "    detector: wordlist\n    words: [darn, heck]\n    shadow: true\n",
        ),
        "--prune",
    )

    assert sorted(line for line in output.splitlines() if line.startswith("delete")) == [
        "delete guardrail codenames (tenant acme)",
        "delete guardrail no-cards (tenant acme)",
        "delete model policy gpt-4o (tenant acme)",
    ]
    assert list(Guardrail.objects.values_list("name", flat=True)) == ["rude"]
    assert list(ModelPolicy.objects.values_list("tenant", flat=True)) == [None]
    deleted = AuditLog.objects.get(action="model_policy.delete")
    assert deleted.metadata["changed"]["strategy"] == ["lowest_cost", None]


def test_prune_leaves_guardrails_and_policies_alone_when_the_file_has_no_section_for_them(tmp_path):
    apply(write(tmp_path, GUARDED))

    assert apply(write(tmp_path, GUARDED.split("model_policies:")[0]), "--prune") == "no changes\n"
    assert (Guardrail.objects.count(), ModelPolicy.objects.count()) == (3, 2)


def test_with_tenant_prune_deletes_only_that_tenants_guardrails_and_policies(tmp_path, acme, globex):
    apply(write(tmp_path, GUARDED))
    Guardrail.objects.create(tenant=globex, name="theirs", detector="email")
    ModelPolicy.objects.create(tenant=globex, model="gpt-4o")

    output = apply(write(tmp_path, "model_policies: []\nguardrails: []\n"), "--tenant", "acme", "--prune")

    assert output.splitlines()[-1] == "0 created, 0 changed, 4 deleted"
    assert list(Guardrail.objects.values_list("name", flat=True)) == ["theirs"]
    assert set(ModelPolicy.objects.values_list("tenant__slug", flat=True)) == {None, "globex"}


def test_a_dry_run_of_guardrails_and_policies_writes_nothing(tmp_path):
    before = snapshot()

    output = apply(write(tmp_path, GUARDED), "--dry-run")

    assert "create guardrail codenames (tenant acme)" in output
    assert output.splitlines()[-1] == "dry run, nothing written: would have 8 created, 0 changed, 0 deleted"
    assert snapshot() == before


def test_a_guardrail_on_a_key_the_file_cannot_name_is_refused(tmp_path, acme):
    unnamed, _ = api_key_create(tenant=acme)
    guardrail = Guardrail.objects.create(tenant=acme, name="no-cards", detector="card")
    guardrail.api_keys.add(unnamed)

    message = refused(tmp_path, GUARDED)

    assert (
        f"line 19: guardrail no-cards (tenant acme): the guardrail in the database applies to the key "
        f"{unnamed.prefix}, which the file cannot name" in message
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "detector: card",
            "detector: creditcard",
            "line 21: guardrail entry 1: detector: 'creditcard' is not one of",
        ),
        (
            "'project-[a-z]+'",
            "'project-[a-z'",
            "line 27: guardrail codenames (tenant acme): pattern refused: invalid regular expression",
        ),
        (
            "'project-[a-z]+'",
            "'(a+)+$'",
            "line 27: guardrail codenames (tenant acme): pattern refused: the regular expression "
            "backtracks catastrophically",
        ),
        (
            "    pattern: 'project-[a-z]+'\n",
            "",
            "line 26: guardrail codenames (tenant acme): the regex detector needs a pattern",
        ),
        (
            "detector: card",
            "detector: card\n    pattern: x",
            "line 22: guardrail no-cards (tenant acme): only the regex detector takes a pattern",
        ),
        (
            "    words: [darn, heck]\n",
            "",
            "line 33: guardrail rude (tenant acme): the wordlist detector needs words",
        ),
        (
            "api_keys: [backend]",
            "api_keys: [frontend]",
            "line 30: guardrail codenames (tenant acme): unknown API key 'frontend' in tenant acme",
        ),
        (
            "name: rude",
            "name: no-cards",
            "line 31: duplicate guardrail no-cards (tenant acme): first at line 19",
        ),
        (
            "action: block",
            "action: drop",
            "line 23: guardrail entry 1: action: 'drop' is not one of block, mask, flag",
        ),
        (
            "strategy: lowest_cost",
            "strategy: cheapest",
            "line 16: model policy entry 2: strategy: 'cheapest' is not one of priority, weighted, "
            "round_robin, least_latency, lowest_cost",
        ),
        (
            "[gpt-4o-mini]",
            "[gpt-4o-mini, gpt-4o]",
            "line 12: model policy gpt-4o (shared): a model cannot be its own fallback",
        ),
        (
            "max_attempts: 3",
            "max_attempts: 11",
            "line 13: model policy entry 1: max_attempts: must be between 1 and 10",
        ),
        (
            "    tenant: acme\nguardrails",
            "    tenant: acme\n  - model: gpt-4o\n    tenant: acme\nguardrails",
            "line 18: duplicate model policy gpt-4o (tenant acme): first at line 15",
        ),
        (
            "first_byte_timeout_seconds: 2.5",
            "first_byte_timeout_seconds: 0",
            "line 8: provider entry 1: first_byte_timeout_seconds: must be at least 0.1 seconds",
        ),
        (
            "  - tenant: acme\n    name: rude",
            "  - tenant: initech\n    name: rude",
            "line 31: guardrail rude (tenant initech): unknown tenant 'initech'",
        ),
    ],
)
def test_a_bad_guardrail_policy_or_timeout_is_refused_with_its_line(tmp_path, old, new, expected):
    assert old in GUARDED

    message = refused(tmp_path, GUARDED.replace(old, new, 1))

    assert expected in message
