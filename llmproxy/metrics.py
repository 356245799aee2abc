"""Prometheus metrics of the gateway."""

from prometheus_client import Counter, Gauge

from llmproxy.gateway.usage import recorder

REQUESTS = Counter(
    "llmproxy_requests", "Client requests answered by the proxy (retries not counted).",
    ["tenant", "model", "provider", "status"],
)
TOKENS = Counter("llmproxy_tokens", "Tokens used, by kind.", ["tenant", "model", "kind"])
USAGE_BACKLOG = Gauge("llmproxy_usage_backlog", "Usage records not yet written to the database.")
USAGE_BACKLOG.set_function(recorder.backlog)
