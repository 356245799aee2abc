"""GET /metrics counts client requests by tenant, model, provider and status, and tokens by kind."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_helpers import client, make_key, make_route

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def scrape(proxy_server):
    text = httpx.get(f"{proxy_server.base_url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_and_tokens_after_known_traffic(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, name="metered")
    api = client(proxy_server, make_key(acme)[1])
    answers = [api.chat.completions.create(model=unique_model, messages=[{"role": "user", "content": "hi"}])
               for _ in range(3)]
    httpx.post(f"{proxy_server.base_url}/v1/chat/completions", headers={"authorization": "Bearer bad"},
               json={"model": unique_model})
    samples = scrape(proxy_server)
    ok = (("model", unique_model), ("provider", "metered"), ("status", "200"), ("tenant", "acme"))
    assert samples[("llmproxy_requests_total", ok)] == 3
    tokens_in = (("kind", "input"), ("model", unique_model), ("tenant", "acme"))
    tokens_out = (("kind", "output"), ("model", unique_model), ("tenant", "acme"))
    assert samples[("llmproxy_tokens_total", tokens_in)] == sum(a.usage.prompt_tokens for a in answers)
    assert samples[("llmproxy_tokens_total", tokens_out)] == sum(a.usage.completion_tokens for a in answers)
