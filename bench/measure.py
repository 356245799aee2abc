"""The load generator's side: wrk for plain requests, bench/stream_client.py for streams.

wrk (C, one thread, keep-alive connections) stays far from being the
bottleneck: on one core it drives nginx at ~80,000 requests/s, about 100x
what a Python proxy serves, so what it measures is the proxy.
"""

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs

BENCH = Path(__file__).resolve().parent


def chat_body(content: str, model: str = "bench") -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 64})


CHAT_BODY = chat_body("Say hello in one short sentence.")

# A realistic prompt of about 2 kB for the guardrails' comparison: a support ticket with order numbers,
# amounts, dates and a stack trace, and nothing any of the bench's rules matches (most prompts have no
# personal data: the common case is a full scan that finds nothing).
GUARD_PROMPT = (
    "You are a support assistant for an online shop. Summarise the customer's ticket below in three "
    "short bullet points, then propose the next action for the agent. Keep a neutral tone and do not "
    "invent facts that are not in the ticket.\n\n"
    "Ticket 48213, opened 2026-11-27 at 09:14 UTC, priority normal, channel web form.\n"
    "Subject: Order 7731-B arrived incomplete and the refund page shows an error\n\n"
    "Hello, I ordered two items on November 21st (order 7731-B, total 84.90 EUR including 4.95 shipping). "
    "The parcel arrived on the 25th but only contained the kettle; the set of four mugs was missing. The "
    "packing slip lists both items and the weight printed on the label is 1.2 kg, which seems too light "
    "for both. I tried to request a partial refund through the returns page, but after choosing the "
    "missing item and the reason 'not received' the page shows a red banner saying that something went "
    "wrong, and the button stays greyed out. I tried twice, in two browsers, on the 26th and again this "
    "morning. My account still shows the order as delivered in full. Could you either send the mugs "
    "again or refund 29.00 EUR for them? I would prefer the replacement if it can arrive before "
    "December 6th, as they are a present. The courier's tracking page says the parcel was left with a "
    "neighbour at 14:32, which is correct, and the box did not look damaged or opened.\n\n"
    "Internal note from the first-line agent: the returns service logged the following for this "
    "customer at 08:57 and 09:02 today:\n"
    "  ReturnsError: line item 2 of order 7731-B has status PACKED, expected SHIPPED\n"
    "    at returns.validate_items (returns/validation.py:118)\n"
    "    at returns.create_request (returns/service.py:64)\n"
    "  warehouse pick list 2026-11-24 batch 19, bin C-14, quantity picked 1 of 2\n"
    "Stock for the mug set in the main warehouse is 37 units; the next courier pick-up is tomorrow at "
    "16:00. Replacement shipments under 40 EUR can be approved by first-line agents without a manager. "
    "The customer has placed 6 orders since 2023 and opened one earlier ticket, which was about a "
    "delivery address change and was closed the same day.\n"
)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int  # non-2xx answers, socket errors and timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_request: float | None = None
    rounds_rps: list = field(default_factory=list)  # requests/s of each round, when interleaved
    upstream_calls: int | None = None  # what the upstream counted during the runs, when asked

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.errors


def wrk(
    url: str,
    *,
    key: str,
    connections: int,
    seconds: float,
    cpu: int,
    body: str = CHAT_BODY,
    headers: dict | None = None,
) -> LoadResult:
    extra = "\n".join(f"{name}: {value}" for name, value in (headers or {}).items())
    env = dict(os.environ, BENCH_BODY=body, BENCH_KEY=key, BENCH_HEADERS=extra)
    argv = [
        "taskset",
        "-c",
        str(cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "post.lua"),
        url,
    ]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    r = json.loads(line.removeprefix("WRK_JSON "))
    socket_errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    return LoadResult(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        errors=r["status_errors"] + socket_errors,
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
    )


@dataclass
class StreamResult:
    ttfb_ms: list = field(default_factory=list)
    total_ms: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    warmup_ok: int = 0

    @property
    def ttfb_p50(self):
        return statistics.median(self.ttfb_ms) if self.ttfb_ms else float("nan")

    @property
    def ttfb_p99(self):
        return _percentile(self.ttfb_ms, 99)

    @property
    def total_p50(self):
        return statistics.median(self.total_ms) if self.total_ms else float("nan")

    @property
    def total_p99(self):
        return _percentile(self.total_ms, 99)

    @property
    def ok(self) -> int:
        return len(self.ttfb_ms)


def streams(
    url: str, *, key: str, model: str, count: int, warmup: int, cpu: int, prompt: str = ""
) -> StreamResult:
    argv = [
        "taskset",
        "-c",
        str(cpu),
        sys.executable,
        str(BENCH / "stream_client.py"),
        url,
        "--model",
        model,
        "--key",
        key,
        "--count",
        str(count),
        "--warmup",
        str(warmup),
    ]
    if prompt:
        argv += ["--prompt", prompt]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return StreamResult(r["ttfb_ms"], r["total_ms"], r["errors"], r["warmup_ok"])


def _percentile(values, pct):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# --- the same load on several variants, interleaved -----------------------------------------------


@dataclass
class Variant:
    """One side of a comparison: where the requests go and what they say."""

    name: str
    url: str
    key: str = ""
    body: str = CHAT_BODY
    headers: dict = field(default_factory=dict)
    pid: int | None = None  # the server's, for its CPU time
    stream_url: str = ""
    stream_model: str = "bench-stream"
    prompt: str = ""  # the streamed requests' prompt ("" : stream_client's own)
    tenant: str = ""  # whose usage rows its answers become ("" : not the proxy's)


def merge(
    results: list, *, cpu_seconds: float | None = None, upstream_calls: int | None = None
) -> LoadResult:
    """Rounds of one variant as one result: requests/s over all of them, percentiles the rounds' median."""
    requests = sum(r.requests for r in results)
    merged = LoadResult(
        requests=requests,
        seconds=sum(r.seconds for r in results),
        errors=sum(r.errors for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p90_ms=statistics.median(r.p90_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
        rounds_rps=[r.rps for r in results],
        upstream_calls=upstream_calls,
    )
    if cpu_seconds is not None:
        merged.cpu_ms_per_request = cpu_seconds * 1000 / max(requests, 1)
    return merged


def interleaved(
    variants: list,
    *,
    connections: int,
    rounds: int,
    seconds: float,
    cpu: int,
    upstream_count=None,
) -> dict:
    """wrk on every variant in turn, ``rounds`` times (a b c a b c ...), so that a change in the
    machine's load lands on all of them alike. ``upstream_count()``, when given, is read around each run:
    what the upstream served during a variant's runs.
    """
    runs = {v.name: [] for v in variants}
    cpu_used = dict.fromkeys(runs, 0.0)
    calls = dict.fromkeys(runs, 0)
    for _ in range(rounds):
        for v in variants:
            cpu0 = procs.cpu_seconds(v.pid) if v.pid else 0.0
            calls0 = upstream_count() if upstream_count else 0
            result = wrk(
                v.url,
                key=v.key,
                connections=connections,
                seconds=seconds,
                cpu=cpu,
                body=v.body,
                headers=v.headers,
            )
            if upstream_count:
                calls[v.name] += upstream_count() - calls0
            if v.pid:
                cpu_used[v.name] += procs.cpu_seconds(v.pid) - cpu0
            runs[v.name].append(result)
    return {
        v.name: merge(
            runs[v.name],
            cpu_seconds=cpu_used[v.name] if v.pid else None,
            upstream_calls=calls[v.name] if upstream_count else None,
        )
        for v in variants
    }


def interleaved_streams(variants: list, *, rounds: int, count: int, warmup: int, cpu: int) -> dict:
    """Streams of every variant in turn, ``rounds`` times ``count`` each (after ``warmup`` each time)."""
    merged = {v.name: StreamResult() for v in variants}
    for _ in range(rounds):
        for v in variants:
            r = streams(
                v.stream_url or v.url,
                key=v.key,
                model=v.stream_model,
                count=count,
                warmup=warmup,
                cpu=cpu,
                prompt=v.prompt,
            )
            m = merged[v.name]
            m.ttfb_ms += r.ttfb_ms
            m.total_ms += r.total_ms
            m.errors += r.errors
            m.warmup_ok += r.warmup_ok
    return merged
