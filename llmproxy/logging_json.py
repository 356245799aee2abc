"""Logs as one JSON object per line (LOG_FORMAT=json), and the access log of the proxied requests.

Every logger goes through JsonFormatter when LOG_FORMAT is json (the default
when DEBUG is off): Django's, Daphne's and the proxy's own, so one parser reads
them all. A record's ``fields`` (a dict passed as ``extra={"fields": ...}``)
become top-level keys; with tracing on, so do the trace and span ids of the
span the line was written in.

``log_request`` writes the access line of one proxied request (logger
``llmproxy.access``): who (tenant, key prefix — never the key), what (endpoint,
model, route), how it went (status, error, tokens, cost, latency). It is given
no prompt or answer text, so none can leak into the logs.
"""

import logging
from datetime import UTC, datetime

import orjson

from llmproxy import tracing

access_log = logging.getLogger("llmproxy.access")

# LogRecord's own attributes: anything else on a record came from ``extra=`` and is worth keeping.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        for name, value in vars(record).items():
            # Django's request logs carry the HttpRequest itself: its string, not its body.
            if name not in _RESERVED and name != "fields" and name not in entry:
                entry[name] = value if isinstance(value, int | float | str | bool | None) else str(value)
        if tracing.ENABLED:
            entry.update(tracing.current_ids())
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def log_request(record, *, tenant: str):
    """The access line of one proxied request, from its usage record (llmproxy.gateway.usage.UsageRecord)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    route = _serving_route(record.attempts)
    fields = {
        "request_id": record.request_id,
        "tenant": tenant,
        "key_prefix": record.key_prefix,
        "endpoint": record.endpoint,
        "model": record.model,
        "stream": record.stream,
        "provider": record.provider,
        "upstream_model": record.upstream_model,
        "route_id": route,
        "attempts": len(record.attempts),
        "status": record.status,
        "error_type": record.error_type,
        "cache_hit": record.cache_hit,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "tokens_estimated": record.tokens_estimated,
        "cost": float(record.cost),
        "latency_ms": round(record.latency_ms, 2),
        "ttfb_ms": None if record.ttfb_ms is None else round(record.ttfb_ms, 2),
    }
    access_log.info(
        "%s %s %s %d %.0fms",
        record.request_id,
        record.endpoint,
        record.model or "-",
        record.status,
        record.latency_ms,
        extra={"fields": fields},
    )


def _serving_route(attempts):
    # The route that answered, else the last one tried: what an operator looks at first.
    for attempt in reversed(attempts):
        if attempt.get("status") == 200:
            return attempt.get("route")
    return attempts[-1].get("route") if attempts else None
