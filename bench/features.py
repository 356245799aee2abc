"""What three features cost or save, each against the same proxy without it, in the same run.

Run by bench.run on one of our servers (uvicorn by default, `--features`), after its own
measurements, every comparison interleaved (bench.measure.interleaved: a b a b ...):

- response cache (issue 7): the same plain request, at concurrency 1 and 32, answered from the
  cache (tenant `bench-cache`, primed) against the proxied call without cache (tenant `bench`),
  a miss with the cache on (`Cache-Control: no-cache`: looked up nowhere, sent upstream, stored)
  and the direct call to nginx. Verified: the proxy says `x-llmproxy-cache: hit`, its hit counter
  grows by every answer and nginx serves nothing during the hits' runs (stub_status).
- guardrails (issue 13): a 2 kB prompt (measure.GUARD_PROMPT) to tenant `bench-guard`, with five
  rules on prompts and answers (db.GUARDRAILS), against the same prompt to `bench`; plain requests
  at concurrency 1 and 32, and streams (response rules on every chunk). Verified: a prompt with a
  secret is refused (400 guardrail_blocked), one with an email address counts a hit.
- tracing (issue 9): a second process of the same server with OTEL_EXPORTER_OTLP_ENDPOINT set,
  its spans exported by OTLP/HTTP to bench/otlp_sink.py, against the first one (tracing off).
  Verified: the sink receives the spans of every answered request. Plus the hooks' own cost when
  off (bench.micro tracing), against the CPU per request measured here.

Any verification that fails is a failure of the run: bench.run writes the results and exits 1.
"""

import collections
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import measure, procs

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Rig:
    """What the comparisons need from the run: cores, upstreams, the trace sink, how to start a server."""

    proxy_cpu: int
    client_cpu: int
    direct_url: str
    upstream_count: object  # () -> requests nginx has served (UpstreamCounter)
    sink_url: str
    env: dict
    run_dir: Path
    argv_for: object  # (port) -> argv of the server being measured
    step: object  # (message) -> None
    rounds: int = 3
    seconds: float = 3.0
    stream_rounds: int = 2
    streams: int = 30


@dataclass
class Features:
    server: str  # the label of the server they were measured on
    rounds: int = 0
    seconds: float = 0.0
    stream_rounds: int = 0
    streams: int = 0
    cache_c1: dict = field(default_factory=dict)  # direct, uncached, miss, hit -> LoadResult
    cache_c32: dict = field(default_factory=dict)  # uncached, hit
    guard_c1: dict = field(default_factory=dict)  # none, guarded
    guard_c32: dict = field(default_factory=dict)
    guard_streams: dict = field(default_factory=dict)  # none, guarded -> StreamResult
    trace_c1: dict = field(default_factory=dict)  # off, on
    trace_c32: dict = field(default_factory=dict)
    trace_spans: dict = field(default_factory=dict)  # what the sink received from the traced process
    trace_answered: int = 0
    trace_rss: float | None = None
    micro: dict = field(default_factory=dict)  # bench.micro tracing
    evidence: list = field(default_factory=list)  # what shows each comparison measured what it says
    failures: list = field(default_factory=list)
    answered: collections.Counter = field(default_factory=collections.Counter)  # 200s by tenant


class UpstreamCounter:
    """Requests nginx has served (its stub_status), less this counter's own reads."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/nginx_status"
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        with urllib.request.urlopen(self.url, timeout=5) as response:
            return stub_status_requests(response.read().decode()) - self.reads


def stub_status_requests(text: str) -> int:
    """The `requests` figure of nginx's stub_status page (third number of its third line)."""
    lines = text.strip().splitlines()
    if len(lines) < 3 or "requests" not in lines[1]:
        raise ValueError(f"not a stub_status page: {text[:200]!r}")
    return int(lines[2].split()[2])


def metric_total(text: str, name: str, **labels) -> float:
    """The sum of a Prometheus metric's samples whose labels include ``labels``, from /metrics text."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        label_part = line[len(name) :].rsplit(" ", 1)[0]
        if all(w in label_part.split("{", 1)[-1].rstrip("}").split(",") for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        return response.read().decode()


def post(url: str, key: str, body: str, headers: dict | None = None) -> tuple[int, dict, dict]:
    """One request: status, headers (lower-case names), JSON body."""
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), exc.headers
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = {}
    return status, {k.lower(): v for k, v in got.items()}, payload


def run(t, keys: dict, rig: Rig) -> Features:
    f = Features(
        server=t.label,
        rounds=rig.rounds,
        seconds=rig.seconds,
        stream_rounds=rig.stream_rounds,
        streams=rig.streams,
    )
    base = t.url.rsplit("/v1/", 1)[0]
    for name, part in (("response cache", response_cache), ("guardrails", guardrails), ("tracing", tracing)):
        rig.step(f"{t.name}: {name}, {rig.rounds} interleaved rounds of {rig.seconds:g} s per load")
        try:
            part(f, t, base, keys, rig)
        except (RuntimeError, OSError, ValueError, subprocess.CalledProcessError) as exc:
            f.failures.append(f"{name}: the comparison did not run to its end: {str(exc).splitlines()[0]}")
            rig.step(f"{t.name}: {name} failed: {exc}")
    for what, figures in (
        ("response cache, c=1", f.cache_c1),
        ("response cache, c=32", f.cache_c32),
        ("guardrails, c=1", f.guard_c1),
        ("guardrails, c=32", f.guard_c32),
        ("tracing, c=1", f.trace_c1),
        ("tracing, c=32", f.trace_c32),
    ):
        for variant, result in figures.items():
            if result.errors:
                f.failures.append(
                    f"{what}, {variant}: {result.errors} errors (non-2xx answers or socket errors)"
                )
    for variant, result in f.guard_streams.items():
        if result.errors:
            f.failures.append(f"guardrails, {variant} streams: errors {result.errors[:5]}")
    return f


def _count(f: Features, variants, results):
    for v in variants:
        if v.tenant:
            r = results[v.name]
            f.answered[v.tenant] += r.ok if isinstance(r, measure.LoadResult) else r.ok + r.warmup_ok


def _warm(f: Features, variants, rig: Rig):
    """A second of load on each proxied variant: its key, routes, rules and connections in the caches."""
    proxied = [v for v in variants if v.tenant]
    results = {
        v.name: measure.wrk(
            v.url, key=v.key, connections=8, seconds=1, cpu=rig.client_cpu, body=v.body, headers=v.headers
        )
        for v in proxied
    }
    _count(f, proxied, results)


def _compare(f: Features, variants, rig: Rig, connections: int, upstream_count=None) -> dict:
    results = measure.interleaved(
        variants,
        connections=connections,
        rounds=rig.rounds,
        seconds=rig.seconds,
        cpu=rig.client_cpu,
        upstream_count=upstream_count,
    )
    _count(f, variants, results)
    return results


# --- response cache ---------------------------------------------------------------------------------


def response_cache(f: Features, t, base: str, keys: dict, rig: Rig):
    url, pid, cached = t.url, t.process.pid, keys["cache_key"]
    statuses = []
    for headers in ({}, {}, {"cache-control": "no-cache"}):
        status, got, _ = post(url, cached, measure.CHAT_BODY, headers)
        statuses.append((status, got.get("x-llmproxy-cache")))
        f.answered["bench-cache"] += status == 200
    f.evidence.append(
        "response cache: the same request three times, the third with `Cache-Control: no-cache`: "
        + ", ".join(f"{s} `x-llmproxy-cache: {h}`" for s, h in statuses)
    )
    if statuses[1] != (200, "hit") or statuses[2] != (200, "miss"):
        f.failures.append(f"response cache: expected a hit, then a miss with no-cache; got {statuses}")
    direct = measure.Variant("direct", rig.direct_url)
    uncached = measure.Variant("uncached", url, key=keys["key"], pid=pid, tenant="bench")
    miss = measure.Variant(
        "miss", url, key=cached, headers={"Cache-Control": "no-cache"}, pid=pid, tenant="bench-cache"
    )
    hit = measure.Variant("hit", url, key=cached, pid=pid, tenant="bench-cache")
    _warm(f, [uncached, miss, hit], rig)
    scrapes = [scrape(base)]
    f.cache_c1 = _compare(f, [direct, uncached, miss, hit], rig, 1, rig.upstream_count)
    scrapes.append(scrape(base))
    f.cache_c32 = _compare(f, [uncached, hit], rig, 32, rig.upstream_count)
    scrapes.append(scrape(base))

    def counted(name, phase):
        before, after = scrapes[phase], scrapes[phase + 1]
        return metric_total(after, name, tenant="bench-cache") - metric_total(
            before, name, tenant="bench-cache"
        )

    c1, c32 = f.cache_c1, f.cache_c32
    hits_c1, misses_c1 = counted("llmproxy_cache_hits_total", 0), counted("llmproxy_cache_misses_total", 0)
    hits_c32 = counted("llmproxy_cache_hits_total", 1)
    hit_upstream = c1["hit"].upstream_calls + c32["hit"].upstream_calls
    uncached_calls = c1["uncached"].upstream_calls + c32["uncached"].upstream_calls
    uncached_answers = c1["uncached"].requests + c32["uncached"].requests
    f.evidence.append(
        f"response cache, concurrency 1: the proxy counted {hits_c1:,.0f} hits for the "
        f"{c1['hit'].requests:,} hits wrk received and {misses_c1:,.0f} misses for the "
        f"{c1['miss'].requests:,} misses (wrk does not count a request still in flight when it stops); "
        f"concurrency 32: {hits_c32:,.0f} hits for {c32['hit'].requests:,}. nginx served "
        f"{hit_upstream:,} requests during the hits' runs, {c1['miss'].upstream_calls:,} during the "
        f"misses' and {uncached_calls:,} during the uncached calls' ({uncached_answers:,} answered)"
    )
    if hit_upstream != 0:
        f.failures.append(f"response cache: nginx served {hit_upstream} requests while only hits were sent")
    if hits_c1 < c1["hit"].requests or hits_c32 < c32["hit"].requests:
        f.failures.append(
            f"response cache: the proxy counted {hits_c1:.0f} + {hits_c32:.0f} hits for "
            f"{c1['hit'].requests} + {c32['hit'].requests} answers"
        )
    if misses_c1 < c1["miss"].requests:
        f.failures.append(
            f"response cache: {misses_c1:.0f} misses counted for {c1['miss'].requests} no-cache answers"
        )


# --- guardrails -------------------------------------------------------------------------------------


def guardrails(f: Features, t, base: str, keys: dict, rig: Rig):
    url, pid, guarded_key = t.url, t.process.pid, keys["guard_key"]
    before = scrape(base)
    secret = measure.chat_body("Please check why sk-proj-Abc123def456ghi789jkl012mno is rejected.")
    status, _, answer = post(url, guarded_key, secret)
    code = (answer.get("error") or {}).get("code")
    email = measure.chat_body("Forward the invoice to jane.doe@example.com please.")
    email_status, _, _ = post(url, guarded_key, email)
    f.answered["bench-guard"] += email_status == 200
    emails_hit = metric_total(
        scrape(base), "llmproxy_guardrail_hits_total", tenant="bench-guard", guardrail="no-emails"
    ) - metric_total(before, "llmproxy_guardrail_hits_total", tenant="bench-guard", guardrail="no-emails")
    f.evidence.append(
        f"guardrails: a prompt with an API key got {status} `{code}`; one with an email address got "
        f"{email_status} and the rule no-emails counted {emails_hit:.0f} hit"
    )
    if status != 400 or code != "guardrail_blocked" or email_status != 200 or emails_hit < 1:
        f.failures.append(
            f"guardrails: the rules are not in force for tenant bench-guard (secret: {status} {code}; "
            f"email: {email_status}, {emails_hit:.0f} hits)"
        )
    body = measure.chat_body(measure.GUARD_PROMPT)
    none = measure.Variant(
        "none",
        url,
        key=keys["key"],
        body=body,
        pid=pid,
        tenant="bench",
        stream_url=t.stream_url,
        prompt=measure.GUARD_PROMPT,
    )
    guarded = measure.Variant(
        "guarded",
        url,
        key=guarded_key,
        body=body,
        pid=pid,
        tenant="bench-guard",
        stream_url=t.stream_url,
        prompt=measure.GUARD_PROMPT,
    )
    _warm(f, [none, guarded], rig)
    f.guard_c1 = _compare(f, [none, guarded], rig, 1)
    f.guard_c32 = _compare(f, [none, guarded], rig, 32)
    f.guard_streams = measure.interleaved_streams(
        [none, guarded], rounds=rig.stream_rounds, count=rig.streams, warmup=3, cpu=rig.client_cpu
    )
    _count(f, [none, guarded], f.guard_streams)


# --- tracing ----------------------------------------------------------------------------------------


def sink_stats(rig: Rig) -> dict:
    with urllib.request.urlopen(f"{rig.sink_url}/stats", timeout=5) as response:
        return json.loads(response.read())


def tracing(f: Features, t, base: str, keys: dict, rig: Rig):
    port = procs.free_port()
    traced_base = f"http://127.0.0.1:{port}"
    env = dict(rig.env, OTEL_EXPORTER_OTLP_ENDPOINT=rig.sink_url, OTEL_SERVICE_NAME="llmproxy-bench")
    sink_before = sink_stats(rig)
    traced = procs.Process(
        f"{t.name}-traced", rig.argv_for(port), cpu=rig.proxy_cpu, log_dir=rig.run_dir, env=env, cwd=ROOT
    )
    try:
        procs.wait_http(f"{traced_base}/healthz", traced)
        off = measure.Variant("off", t.url, key=keys["key"], pid=t.process.pid, tenant="bench")
        on = measure.Variant(
            "on",
            f"{traced_base}/v1/chat/completions",
            key=keys["trace_key"],
            pid=traced.pid,
            tenant="bench-trace",
        )
        answered_before = f.answered["bench-trace"]
        # The traced process is new: a full warm-up, as the main measurement gives each server.
        warm = measure.wrk(on.url, key=on.key, connections=32, seconds=3, cpu=rig.client_cpu)
        f.answered["bench-trace"] += warm.ok
        _warm(f, [off], rig)
        f.trace_c1 = _compare(f, [off, on], rig, 1)
        f.trace_c32 = _compare(f, [off, on], rig, 32)
        f.trace_rss = procs.rss_mb(traced.pid)
        f.trace_answered = f.answered["bench-trace"] - answered_before
        time.sleep(1.5)  # one usage flush interval and a bit, as for the main process
    finally:
        traced.stop()  # a graceful stop: the SDK exports the spans still queued
    received = sink_stats(rig)
    f.trace_spans = {k: received[k] - sink_before.get(k, 0) for k in received}
    spans, posts = f.trace_spans.get("spans", 0), f.trace_spans.get("posts", 0)
    per_request = spans / max(f.trace_answered, 1)
    f.evidence.append(
        f"tracing: the traced process answered {f.trace_answered:,} requests; the sink received "
        f"{spans:,} spans ({per_request:.2f} per request) in {posts:,} OTLP/HTTP posts "
        f"({f.trace_spans.get('bytes', 0) / 1e6:.1f} MB), {f.trace_spans.get('bad', 0)} malformed"
    )
    if spans < f.trace_answered or f.trace_spans.get("bad"):
        f.failures.append(
            f"tracing: {spans} spans received for {f.trace_answered} requests answered with tracing on"
        )
    # The hooks' own cost with tracing off, on the proxies' core (idle now).
    out = subprocess.run(
        ["taskset", "-c", str(rig.proxy_cpu), sys.executable, "-m", "bench.micro", "tracing", "--json"],
        cwd=ROOT,
        env={k: v for k, v in rig.env.items() if not k.startswith("OTEL_")},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    f.micro = json.loads(out.strip().splitlines()[-1])
