"""The benchmark's side of the database, through the proxy's own commands and models.

    python -m bench.db setup --nginx-port N --sse-port N --servers daphne,uvicorn  (prints keys, JSON)
    python -m bench.db usage --since ISO-TIME                                      (prints counts, JSON)

`setup` fills an empty, migrated database. Tenant `bench`: model `bench` ->
nginx, model `bench-stream` -> the SSE upstream, both priced so the cost limit
does work, and three limits that every request checks and reserves (the
tenant's requests per minute and tokens per hour, the key's cost per day),
high enough never to refuse during a run. Its twins differ in one feature
each: `bench-cache` has the response cache on, `bench-guard` five guardrails
(GUARDRAILS), `bench-trace` is served by the process with tracing on.
Tenant `bench-tight`: per server, a key allowed one request an hour, to show
that limits are enforced.
"""

import argparse
import io
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy.settings")


def _command(*args) -> str:
    from django.core.management import call_command

    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _new_key(tenant: str) -> str:
    # create_api_key prints the whole key alone on its last line.
    return _command("create_api_key", "--tenant", tenant, "--name", "bench").strip().splitlines()[-1]


def _prefix(key: str) -> str:
    return key[: len("lp-") + 8]


def _proxied_tenant(slug: str, nginx_port: int, sse_port: int) -> str:
    """A tenant like `bench`: both models on both upstreams, priced, three limits; returns its key."""
    _command("create_tenant", slug)
    _command(
        "create_provider",
        "bench-nginx",
        "--kind",
        "openai_compatible",
        "--base-url",
        f"http://127.0.0.1:{nginx_port}/v1",
        "--tenant",
        slug,
    )
    _command(
        "create_provider",
        "bench-sse",
        "--kind",
        "openai_compatible",
        "--base-url",
        f"http://127.0.0.1:{sse_port}/v1",
        "--tenant",
        slug,
    )
    for model, provider in (("bench", "bench-nginx"), ("bench-stream", "bench-sse")):
        _command(
            "create_model_route",
            model,
            "--provider",
            provider,
            "--upstream-model",
            "bench-upstream",
            "--input-price",
            "0.15",
            "--output-price",
            "0.60",
            "--tenant",
            slug,
        )
    key = _new_key(slug)
    _command(
        "set_quota", "--tenant", slug, "--metric", "requests", "--period", "minute", "--limit", "100000000"
    )
    _command(
        "set_quota", "--tenant", slug, "--metric", "tokens", "--period", "hour", "--limit", "100000000000"
    )
    _command(
        "set_quota",
        "--tenant",
        slug,
        "--key",
        _prefix(key),
        "--metric",
        "cost",
        "--period",
        "day",
        "--limit",
        "1000000",
    )
    return key


# The guardrails of tenant bench-guard (name, detector, extra arguments, direction, action): the
# built-in detectors a tenant turns on first and two operator regexes, on prompts and on answers.
GUARDRAILS = [
    ("no-card-numbers", "card", [], "both", "mask"),
    ("no-emails", "email", [], "both", "mask"),
    ("no-secrets", "secret", [], "both", "block"),
    ("employee-ids", "regex", ["--pattern", r"\bEMP-\d{6}\b"], "both", "mask"),
    (
        "project-codenames",
        "regex",
        ["--pattern", r"(?i)\bproject[ -](?:falcon|osprey|heron)\b"],
        "both",
        "flag",
    ),
]


def setup(nginx_port: int, sse_port: int, servers: list[str]) -> dict:
    """Tenant `bench` (the main table) and its twins, identical but for one feature each:
    `bench-cache` (response cache on), `bench-guard` (GUARDRAILS), `bench-trace` (served by a
    process with tracing on: its own usage rows and counters).
    """
    key = _proxied_tenant("bench", nginx_port, sse_port)
    cache_key = _proxied_tenant("bench-cache", nginx_port, sse_port)
    _command("update_tenant", "bench-cache", "--cache-ttl", "3600")
    guard_key = _proxied_tenant("bench-guard", nginx_port, sse_port)
    for name, detector, extra, direction, action in GUARDRAILS:
        _command(
            "create_guardrail",
            name,
            "--tenant",
            "bench-guard",
            "--detector",
            detector,
            *extra,
            "--direction",
            direction,
            "--action",
            action,
        )
    trace_key = _proxied_tenant("bench-trace", nginx_port, sse_port)

    _command("create_tenant", "bench-tight")
    _command(
        "create_provider",
        "bench-nginx",
        "--kind",
        "openai_compatible",
        "--base-url",
        f"http://127.0.0.1:{nginx_port}/v1",
        "--tenant",
        "bench-tight",
    )
    _command(
        "create_model_route",
        "bench",
        "--provider",
        "bench-nginx",
        "--upstream-model",
        "bench-upstream",
        "--tenant",
        "bench-tight",
    )
    tight = {}
    for server in servers:
        tight[server] = _new_key("bench-tight")
        _command(
            "set_quota",
            "--tenant",
            "bench-tight",
            "--key",
            _prefix(tight[server]),
            "--metric",
            "requests",
            "--period",
            "hour",
            "--limit",
            "1",
        )
    return {
        "key": key,
        "cache_key": cache_key,
        "guard_key": guard_key,
        "trace_key": trace_key,
        "tight_keys": tight,
    }


def usage(since: str) -> dict:
    from django.utils.dateparse import parse_datetime

    from audit.models import RequestLog

    since_time = parse_datetime(since)
    rows = RequestLog.objects.filter(tenant__slug="bench", created_at__gte=since_time)
    tenants = {}
    for slug in ("bench-cache", "bench-guard", "bench-trace"):
        of_tenant = RequestLog.objects.filter(tenant__slug=slug, created_at__gte=since_time)
        tenants[slug] = {
            "rows": of_tenant.count(),
            "rows_200": of_tenant.filter(status=200).count(),
            "cache_hits": of_tenant.filter(status=200, cache_hit=True).count(),
        }
    return {"rows": rows.count(), "rows_200": rows.filter(status=200).count(), "tenants": tenants}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    set_up = sub.add_parser("setup")
    set_up.add_argument("--nginx-port", type=int, required=True)
    set_up.add_argument("--sse-port", type=int, required=True)
    set_up.add_argument("--servers", required=True, help="comma-separated: one tight key each")
    count = sub.add_parser("usage")
    count.add_argument("--since", required=True)
    args = parser.parse_args()

    import django

    django.setup()
    if args.action == "setup":
        result = setup(args.nginx_port, args.sse_port, args.servers.split(","))
    else:
        result = usage(args.since)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
