"""GET /metrics counts client requests by tenant, model, provider and status, and tokens by kind;
circuit states; several processes answer with one set of numbers."""

import time

import httpx
import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import client, make_key, make_route

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def scrape(proxy_server):
    text = httpx.get(f"{proxy_server.base_url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_and_tokens_after_known_traffic(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, name="metered")
    api = client(proxy_server, make_key(acme)[1])
    answers = [
        api.chat.completions.create(model=unique_model, messages=[{"role": "user", "content": "hi"}])
        for _ in range(3)
    ]
    httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": "Bearer bad"},
        json={"model": unique_model},
    )
    samples = scrape(proxy_server)
    ok = (("model", unique_model), ("provider", "metered"), ("status", "200"), ("tenant", "acme"))
    assert samples[("llmproxy_requests_total", ok)] == 3
    tokens_in = (("kind", "input"), ("model", unique_model), ("tenant", "acme"))
    tokens_out = (("kind", "output"), ("model", unique_model), ("tenant", "acme"))
    assert samples[("llmproxy_tokens_total", tokens_in)] == sum(a.usage.prompt_tokens for a in answers)
    assert samples[("llmproxy_tokens_total", tokens_out)] == sum(a.usage.completion_tokens for a in answers)


def test_a_route_whose_breaker_opened_reads_open_in_the_circuit_state(
    proxy_server, acme, upstream, unique_model
):
    _, broken = make_route(
        acme,
        unique_model,
        upstream.v1,
        f"mock-1?fail_status=503&tag={unique_model}",
        name=f"{unique_model}-broken",
    )
    _, healthy = make_route(acme, f"{unique_model}-ok", upstream.v1, name=f"{unique_model}-healthy")
    key = make_key(acme)[1]
    failures = settings.LLMPROXY_BREAKER_FAILURES
    statuses = [chat(proxy_server, key, unique_model).status_code for _ in range(failures + 1)]

    samples = scrape(proxy_server)

    # The last request found the breaker open: its route was skipped, not asked.
    assert statuses == [503] * (failures + 1)
    assert len([r for r in upstream.requests() if r["body"]["model"].endswith(unique_model)]) == failures
    state = {
        (dict(labels)["route"], dict(labels)["provider"]): v
        for (name, labels), v in samples.items()
        if name == "llmproxy_circuit_state"
    }
    assert state[(str(broken.id), f"{unique_model}-broken")] == 2
    assert state[(str(healthy.id), f"{unique_model}-healthy")] == 0


def chat(proxy_server, key, model, base_url=None):
    return httpx.post(
        f"{base_url or proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


# --- several processes, one set of numbers (PROMETHEUS_MULTIPROC_DIR) ---------------------------------

SCRAPE_TOKEN = "scrape-token-for-tests"


class Scraper:
    def __init__(self, base_url):
        self.base_url = base_url

    def __call__(self, token=SCRAPE_TOKEN):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.base_url}/metrics", headers=headers)

    def samples(self):
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(self().text)
            for s in family.samples
        }

    def wait_for_no_backlog(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.samples()[("llmproxy_usage_backlog", ())] == 0:
                return
            time.sleep(0.05)
        raise AssertionError("the usage backlog did not empty")


@pytest.fixture
def two_processes(tmp_path, mock_upstream):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    started = []
    try:
        for name in ("daphne-metrics-a", "daphne-metrics-b"):
            env = {"PROMETHEUS_MULTIPROC_DIR": shared, "LLMPROXY_METRICS_TOKEN": SCRAPE_TOKEN}
            process, base = servers.start_daphne(ARTIFACTS / "logs", name=name, **env)
            process.base_url = base
            started.append(process)
        yield started
    finally:
        for process in started:
            process.stop()


def test_several_processes_sharing_a_directory_answer_with_the_same_totals(
    two_processes, acme, upstream, unique_model
):
    a, b = two_processes
    make_route(acme, unique_model, upstream.v1, name=f"{unique_model}-up")
    key = make_key(acme)[1]
    answers = [chat(None, key, unique_model, a.base_url) for _ in range(2)]
    answers += [chat(None, key, unique_model, b.base_url) for _ in range(3)]
    chat(None, "lp-nosuchke-y" + "x" * 32, unique_model, b.base_url)
    scrape_a, scrape_b = Scraper(a.base_url), Scraper(b.base_url)
    scrape_a.wait_for_no_backlog()

    ok = (("model", unique_model), ("provider", f"{unique_model}-up"), ("status", "200"), ("tenant", "acme"))
    tokens_in = (("kind", "input"), ("model", unique_model), ("tenant", "acme"))
    refused = (("model", ""), ("provider", ""), ("status", "401"), ("tenant", ""))  # no key: nothing read
    for samples in (scrape_a.samples(), scrape_b.samples()):
        assert samples[("llmproxy_requests_total", ok)] == 5
        assert samples[("llmproxy_tokens_total", tokens_in)] == sum(
            r.json()["usage"]["prompt_tokens"] for r in answers
        )
        assert samples[("llmproxy_requests_total", refused)] == 1

    # A process that stopped still counts: totals never go down between scrapes.
    b.stop()
    samples = scrape_a.samples()
    assert samples[("llmproxy_requests_total", ok)] == 5
    assert samples[("llmproxy_usage_backlog", ())] == 0


def test_with_a_token_set_a_scrape_without_it_is_refused(two_processes):
    scrape_a = Scraper(two_processes[0].base_url)

    refused = scrape_a(token=None)
    wrong = scrape_a(token="not-the-token")

    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert "llmproxy" not in refused.text + wrong.text
    assert scrape_a().status_code == 200
