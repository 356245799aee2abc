"""Building blocks of the end-to-end tests that involve Anthropic, as a client or as an upstream."""

import contextlib
import time

import anthropic
import httpx

from tests.gateway_helpers import make_route, wait_for_logs

CREDENTIAL = "sk-ant-test-credential"
HELLO = [{"role": "user", "content": "Hello there"}]


def anthropic_route(tenant, model, upstream, upstream_model="claude-x", **fields):
    """A route to the mock upstream's Messages API, with a stored credential and an extra header."""
    provider, route = make_route(tenant, model, upstream.base, upstream_model, kind="anthropic", **fields)
    provider.set_api_key(CREDENTIAL)
    provider.extra_headers = {"x-team": "platform"}
    provider.save()
    return provider, route


def anthropic_client(proxy_server, key, **kwargs):
    return anthropic.Anthropic(base_url=proxy_server.base_url, api_key=key, max_retries=0, **kwargs)


def sse_event_names(text: str) -> list[str]:
    return [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]


def requests_counted(proxy_server, tenant) -> float:
    """The proxy's llmproxy_requests_total for this tenant: one per request it will write a usage row for."""
    prefix = f'llmproxy_requests_total{{tenant="{tenant.slug}",'
    text = httpx.get(f"{proxy_server.base_url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


@contextlib.contextmanager
def usage_written(proxy_server, tenant):
    """Ends once the proxy wrote the usage rows of the requests made inside.

    The proxy writes them in batches a moment after each answer; a test's
    teardown that truncates the tables meanwhile deadlocks with that write on
    PostgreSQL.
    """
    before = requests_counted(proxy_server, tenant)
    yield
    time.sleep(0.05)  # an answer's accounting runs just after its last byte
    wait_for_logs(int(requests_counted(proxy_server, tenant) - before), tenant=tenant)
