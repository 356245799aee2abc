"""/v1/completions, /v1/embeddings and /v1/models, and the provider kinds' wire details."""

import openai
import pytest

from tests.gateway_helpers import client, make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_legacy_completions_plain_and_streamed(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1)
    api = client(proxy_server, make_key(acme)[1])
    answer = api.completions.create(model=unique_model, prompt="Say hi")
    assert answer.choices[0].text == "Mock answer to: Say hi"
    assert answer.model == unique_model
    streamed = "".join(
        c.choices[0].text
        for c in api.completions.create(model=unique_model, prompt="Say hi", stream=True)
        if c.choices
    )
    assert streamed == answer.choices[0].text
    rows = wait_for_logs(2, model=unique_model)
    assert {r.endpoint for r in rows} == {"completions"}
    assert rows[0].output_tokens == rows[1].output_tokens == answer.usage.completion_tokens


def test_embeddings(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, upstream_model="embed-1?embedding_dims=16")
    api = client(proxy_server, make_key(acme)[1])
    result = api.embeddings.create(model=unique_model, input=["one", "two"])
    assert [len(d.embedding) for d in result.data] == [16, 16]
    assert result.model == unique_model
    [row] = wait_for_logs(1, model=unique_model)
    assert row.endpoint == "embeddings" and row.input_tokens == result.usage.prompt_tokens > 0
    assert row.output_tokens == 0


def test_models_lists_exactly_what_the_key_may_use(proxy_server, acme, globex, upstream, unique_model):
    make_route(acme, f"{unique_model}-a", upstream.v1)
    make_route(acme, f"{unique_model}-b", upstream.v1)
    make_route(globex, f"{unique_model}-globex", upstream.v1)
    make_route(None, f"{unique_model}-shared", upstream.v1, shared=True)
    everything = client(proxy_server, make_key(acme)[1]).models.list()
    ids = {m.id for m in everything.data}
    assert {f"{unique_model}-a", f"{unique_model}-b", f"{unique_model}-shared"} <= ids
    assert f"{unique_model}-globex" not in ids
    narrow = client(proxy_server, make_key(acme, allowed_models=[f"{unique_model}-b"])[1])
    assert [m.id for m in narrow.models.list().data] == [f"{unique_model}-b"]
    assert narrow.models.retrieve(f"{unique_model}-b").id == f"{unique_model}-b"
    with pytest.raises(openai.NotFoundError):
        narrow.models.retrieve(f"{unique_model}-a")
    with pytest.raises(openai.NotFoundError):
        narrow.models.retrieve(f"{unique_model}-globex")


def test_a_key_of_one_tenant_never_reaches_another_tenants_routes(
    proxy_server, acme, globex, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="acme-secret-model")
    outsider = client(proxy_server, make_key(globex)[1])
    with pytest.raises(openai.NotFoundError):
        outsider.chat.completions.create(model=unique_model, messages=[{"role": "user", "content": "hi"}])
    assert upstream.requests() == []
    # A shared route serves every tenant.
    make_route(None, f"{unique_model}-shared", upstream.v1, shared=True)
    answer = outsider.chat.completions.create(
        model=f"{unique_model}-shared", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.model == f"{unique_model}-shared"
    [row] = wait_for_logs(1, model=f"{unique_model}-shared")
    assert row.tenant_id == globex.id


def test_a_tenants_own_route_replaces_the_shared_one_for_that_model(
    proxy_server, acme, globex, upstream, unique_model
):
    make_route(None, unique_model, upstream.v1, upstream_model="shared-upstream", shared=True)
    make_route(acme, unique_model, upstream.v1, upstream_model="acme-upstream", name="acme-own")
    client(proxy_server, make_key(acme)[1]).chat.completions.create(
        model=unique_model, messages=[{"role": "user", "content": "hi"}]
    )
    client(proxy_server, make_key(globex)[1]).chat.completions.create(
        model=unique_model, messages=[{"role": "user", "content": "hi"}]
    )
    assert [r["body"]["model"] for r in upstream.requests()] == ["acme-upstream", "shared-upstream"]


def test_openai_kind_sends_the_credential_from_the_named_environment_variable(
    proxy_server, acme, upstream, unique_model, monkeypatch
):
    # The Daphne process was started with the test run's environment; PATH is always there.
    make_route(acme, unique_model, upstream.v1, kind="openai", api_key_env="LLMPROXY_TEST_UPSTREAM_KEY")
    client(proxy_server, make_key(acme)[1]).chat.completions.create(
        model=unique_model, messages=[{"role": "user", "content": "hi"}]
    )
    [received] = upstream.requests()
    assert received["headers"]["authorization"] == "Bearer upstream-secret-from-env"
    assert received["path"] == "/v1/chat/completions"


def test_a_stored_credential_is_decrypted_and_sent(proxy_server, acme, upstream, unique_model):
    provider, _ = make_route(acme, unique_model, upstream.v1, kind="openai")
    provider.set_api_key("sk-stored-credential")
    provider.save()
    assert "sk-stored-credential" not in provider.encrypted_api_key
    client(proxy_server, make_key(acme)[1]).chat.completions.create(
        model=unique_model, messages=[{"role": "user", "content": "hi"}]
    )
    assert upstream.requests()[0]["headers"]["authorization"] == "Bearer sk-stored-credential"


def test_azure_kind_uses_deployment_urls_the_api_version_and_the_api_key_header(
    proxy_server, acme, upstream, unique_model
):
    provider, _ = make_route(
        acme,
        unique_model,
        upstream.base,
        upstream_model="my-gpt4o-deployment",
        kind="azure",
        api_version="2024-10-21",
    )
    provider.set_api_key("azure-credential")
    provider.save()
    answer = client(proxy_server, make_key(acme)[1]).chat.completions.create(
        model=unique_model, messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.model == unique_model
    [received] = upstream.requests()
    assert received["path"] == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert received["query"] == {"api-version": "2024-10-21"}
    assert received["headers"]["api-key"] == "azure-credential"
    assert "authorization" not in received["headers"]


def test_ollama_kind_speaks_the_openai_compatible_v1(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, upstream_model="llama3.2", kind="ollama")
    answer = client(proxy_server, make_key(acme)[1]).chat.completions.create(
        model=unique_model, messages=[{"role": "user", "content": "hi"}], stream=False
    )
    assert answer.choices[0].message.content == "Mock answer to: hi"
    assert upstream.requests()[0]["body"]["model"] == "llama3.2"


def test_the_built_in_mock_kind_answers_without_any_network(proxy_server, acme, unique_model):
    make_route(acme, unique_model, "", upstream_model="mock-1?chunks=3", kind="mock")
    api = client(proxy_server, make_key(acme)[1])
    answer = api.chat.completions.create(model=unique_model, messages=[{"role": "user", "content": "ping"}])
    assert answer.choices[0].message.content == "Mock answer to: ping"
    chunks = [
        c
        for c in api.chat.completions.create(
            model=unique_model, stream=True, messages=[{"role": "user", "content": "ping"}]
        )
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Mock answer to: ping"
