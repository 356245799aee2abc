"""Prometheus metrics of the gateway."""

from prometheus_client import Counter

REQUESTS = Counter(
    "llmproxy_requests", "Client requests answered by the proxy (retries not counted).",
    ["tenant", "model", "provider", "status"],
)
TOKENS = Counter("llmproxy_tokens", "Tokens used, by kind.", ["tenant", "model", "kind"])
