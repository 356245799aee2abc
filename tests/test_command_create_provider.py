from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditLog
from providers.models import Provider


def run(*args):
    out = StringIO()
    call_command("create_provider", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def assert_fails(*args, match):
    before = (Provider.objects.count(), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (Provider.objects.count(), AuditLog.objects.count()) == before


@pytest.mark.django_db
def test_it_creates_a_shared_provider_and_audits_it():
    output = run(
        "openai",
        "--kind",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--api-key-env",
        "OPENAI_API_KEY",
        "--timeout",
        "30",
    )

    assert output == "created provider openai (openai, shared)\n"
    provider = Provider.objects.get(name="openai")
    assert provider.tenant is None
    assert (provider.kind, provider.base_url, provider.api_key_env, provider.timeout_seconds) == (
        "openai",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        30.0,
    )
    audit = AuditLog.objects.get(action="provider.create")
    assert (audit.actor_label, audit.target_id, audit.tenant) == ("command", str(provider.pk), None)
    assert audit.metadata["api_key_env"] == "OPENAI_API_KEY"


@pytest.mark.django_db
def test_the_credential_is_read_from_the_named_variable_when_a_request_is_sent(monkeypatch):
    run(
        "anthropic",
        "--kind",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
        "--api-key-env",
        "ANTHROPIC_KEY_FOR_TEST",
    )
    provider = Provider.objects.get(name="anthropic")

    monkeypatch.setenv("ANTHROPIC_KEY_FOR_TEST", "sk-ant-later")

    assert provider.get_api_key() == "sk-ant-later"
    assert provider.encrypted_api_key == ""


@pytest.mark.django_db
def test_a_mock_provider_needs_no_base_url_and_takes_json_options():
    run(
        "mock",
        "--kind",
        "mock",
        "--option",
        "latency_ms=50",
        "--option",
        "usage=false",
        "--option",
        "reply=Hello there",
        "--option",
        'chunks="3"',
        "--option",
        "extra=[1, 2]",
    )

    provider = Provider.objects.get(name="mock")
    assert provider.base_url == ""
    assert provider.options == {
        "latency_ms": 50,
        "usage": False,
        "reply": "Hello there",
        "chunks": "3",
        "extra": [1, 2],
    }


@pytest.mark.django_db
def test_it_creates_a_tenant_provider(acme):
    output = run("own", "--kind", "ollama", "--base-url", "http://localhost:11434/v1", "--tenant", "acme")

    assert output == "created provider own (ollama, for tenant acme)\n"
    assert Provider.objects.get(name="own").tenant == acme
    assert AuditLog.objects.get(action="provider.create").tenant == acme


@pytest.mark.django_db
def test_the_same_name_may_exist_once_shared_and_once_per_tenant(acme, globex):
    for scope in ([], ["--tenant", "acme"], ["--tenant", "globex"]):
        run("openai", "--kind", "openai", "--base-url", "https://api.openai.com/v1", *scope)

    assert Provider.objects.filter(name="openai").count() == 3


@pytest.mark.django_db
def test_azure_takes_an_api_version():
    run(
        "azure",
        "--kind",
        "azure",
        "--base-url",
        "https://resource.openai.azure.com",
        "--api-version",
        "2024-10-21",
        "--api-key-env",
        "AZURE_OPENAI_API_KEY",
    )

    assert Provider.objects.get(name="azure").api_version == "2024-10-21"


@pytest.mark.parametrize("url", ["http://ollama:11434/v1", "http://127.0.0.1:8080/v1", "http://[::1]:9000"])
@pytest.mark.django_db
def test_it_accepts_service_names_and_ip_addresses_as_hosts(url):
    run("local", "--kind", "openai_compatible", "--base-url", url)

    assert Provider.objects.get(name="local").base_url == url


@pytest.mark.django_db
def test_it_rejects_an_unknown_kind():
    assert_fails(
        "x", "--kind", "gemini", "--base-url", "https://example.com", match="invalid choice: 'gemini'"
    )


@pytest.mark.parametrize("kind", ["openai", "azure", "anthropic", "ollama", "openai_compatible"])
@pytest.mark.django_db
def test_it_requires_a_base_url_except_for_mock(kind):
    assert_fails("x", "--kind", kind, match=f"a base URL is required for the kind {kind}")


@pytest.mark.parametrize(
    "url",
    [
        "api.openai.com/v1",
        "ftp://example.com",
        "https://",
        "https://exa mple.com",
        "http://host:port/",
        "https://-bad-.com",
        "https://example.com/#frag",
    ],
)
@pytest.mark.django_db
def test_it_rejects_a_malformed_base_url(url):
    assert_fails("x", "--kind", "openai", "--base-url", url, match="invalid base URL")


@pytest.mark.parametrize("var", ["1ABC", "MY-KEY", "MY KEY", ""])
@pytest.mark.django_db
def test_it_rejects_a_malformed_environment_variable_name(var):
    assert_fails(
        "x",
        "--kind",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--api-key-env",
        var,
        match="not an environment variable name",
    )


@pytest.mark.parametrize("timeout", ["0", "0.05", "-1", "soon", "inf"])
@pytest.mark.django_db
def test_it_rejects_a_bad_timeout(timeout):
    assert_fails("x", "--kind", "mock", "--timeout", timeout, match=f"timeout {timeout!r}")


@pytest.mark.django_db
def test_it_rejects_a_duplicate_shared_name():
    run("openai", "--kind", "openai", "--base-url", "https://api.openai.com/v1")

    assert_fails("openai", "--kind", "mock", match="provider 'openai' already exists in the shared scope")


@pytest.mark.django_db
def test_it_rejects_a_duplicate_name_in_one_tenant(acme):
    run("openai", "--kind", "openai", "--base-url", "https://api.openai.com/v1", "--tenant", "acme")

    assert_fails(
        "openai",
        "--kind",
        "mock",
        "--tenant",
        "acme",
        match="provider 'openai' already exists in tenant acme",
    )


@pytest.mark.django_db
def test_it_rejects_an_unknown_tenant():
    assert_fails("x", "--kind", "mock", "--tenant", "nope", match="unknown tenant 'nope'")


@pytest.mark.django_db
def test_an_api_version_is_only_for_azure():
    assert_fails(
        "x",
        "--kind",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--api-version",
        "2024",
        match="only to the kind azure",
    )


@pytest.mark.parametrize(("option", "error"), [("latency_ms", "not KEY=VALUE"), ("=5", "not KEY=VALUE")])
@pytest.mark.django_db
def test_it_rejects_an_option_that_is_not_key_value(option, error):
    assert_fails("x", "--kind", "mock", "--option", option, match=error)


@pytest.mark.django_db
def test_it_rejects_an_option_given_twice():
    assert_fails(
        "x",
        "--kind",
        "mock",
        "--option",
        "chunks=1",
        "--option",
        "chunks=2",
        match="option 'chunks' given twice",
    )


@pytest.mark.django_db
def test_call_command_keyword_options_mean_what_the_flags_mean():
    call_command("create_provider", "mock", kind="mock", option=["chunks=2"], timeout="5", stdout=StringIO())

    provider = Provider.objects.get(name="mock")
    assert (provider.options, provider.timeout_seconds) == ({"chunks": 2}, 5.0)
