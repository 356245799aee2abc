"""The results of a run as markdown (bench/results/) and as the table printed at the end."""

import math

# The targets for one proxy process on one core, every feature on.
TARGET_RPS = {"uvicorn": 1000, "daphne": 600}
TARGET_VS_LITELLM = 15
TARGET_ADDED_P50_MS = 1.5
TARGET_ADDED_P99_MS = 5.0
TARGET_TTFB_ADDED_MS = 1.5
TARGET_STREAM_TOTAL = 0.02
TARGET_RSS_MB = 150
TARGET_RSS_DRIFT = 0.10


def _f(value, digits=1, unit=""):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}{unit}"


def _done(t):
    """Measured to the end (a target that failed half-way shows as not measured)."""
    return t.stream is not None and not t.skipped


def _errors(t):
    if not _done(t):
        return None
    return t.c1.errors + t.c32.errors + len(t.stream.errors)


def rows(targets):
    """(label, [cell per target]) for the main table."""
    direct = next((t for t in targets if t.name == "direct" and _done(t)), None)
    litellm = next((t for t in targets if t.name == "litellm" and _done(t)), None)
    measured = [t for t in targets if _done(t)]

    def cells(fn):
        return [fn(t) if _done(t) else "not measured" for t in targets]

    def added(t, attr):
        if direct is None or t is direct:
            return "–"
        return "+" + _f(getattr(t.c1, attr) - getattr(direct.c1, attr), 2)

    out = [
        ("requests/s, concurrency 1", cells(lambda t: _f(t.c1.rps, 0))),
        ("latency p50 / p99, c=1 (ms)", cells(lambda t: f"{_f(t.c1.p50_ms, 2)} / {_f(t.c1.p99_ms, 2)}")),
        (
            "added over direct p50 / p99, c=1 (ms)",
            cells(lambda t: f"{added(t, 'p50_ms')} / {added(t, 'p99_ms')}" if t is not direct else "–"),
        ),
        ("requests/s, concurrency 32", cells(lambda t: _f(t.c32.rps, 0))),
        ("latency p50 / p99, c=32 (ms)", cells(lambda t: f"{_f(t.c32.p50_ms, 2)} / {_f(t.c32.p99_ms, 2)}")),
        (
            "throughput vs LiteLLM, c=32",
            cells(
                lambda t: f"{t.c32.rps / litellm.c32.rps:.1f}×"
                if litellm and t not in (direct, litellm)
                else "–"
            ),
        ),
        (
            "CPU per request, c=1 / c=32 (ms)",
            cells(
                lambda t: f"{_f(t.c1.cpu_ms_per_request, 2)} / {_f(t.c32.cpu_ms_per_request, 2)}"
                if t.c1.cpu_ms_per_request is not None
                else "–"
            ),
        ),
        (
            "stream: first byte p50 / p99 (ms)",
            cells(lambda t: f"{_f(t.stream.ttfb_p50, 2)} / {_f(t.stream.ttfb_p99, 2)}"),
        ),
        (
            "stream: first byte added over direct, p50 (ms)",
            cells(
                lambda t: "+" + _f(t.stream.ttfb_p50 - direct.stream.ttfb_p50, 2)
                if direct and t is not direct
                else "–"
            ),
        ),
        (
            "stream: total p50 / p99 (ms)",
            cells(lambda t: f"{_f(t.stream.total_p50, 1)} / {_f(t.stream.total_p99, 1)}"),
        ),
        (
            "stream: total vs direct, p50",
            cells(
                lambda t: f"{100 * (t.stream.total_p50 / direct.stream.total_p50 - 1):+.1f}%"
                if direct and t is not direct
                else "–"
            ),
        ),
        ("errors (c=1 + c=32 + streams)", cells(lambda t: str(_errors(t)))),
        (
            "RSS idle / after warm-up / end (MiB)",
            cells(
                lambda t: f"{_f(t.rss_idle, 0)} / {_f(t.rss_start, 0)} / {_f(t.rss_end, 0)}"
                if t.rss_start is not None
                else "–"
            ),
        ),
    ]
    return out if measured else []


def _markdown(header, body):
    lines = ["| | " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(header)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in body]
    return "\n".join(lines)


def _text(header, body):
    table = [["", *header], *([label, *cells] for label, cells in body)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out = []
    for n, row in enumerate(table):
        out.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(targets):
    return _markdown([t.label for t in targets], rows(targets))


def terminal_table(targets):
    out = [_text([t.label for t in targets], rows(targets))]
    for t in targets:
        if t.skipped:
            out.append(f"{t.label}: not measured: {t.skipped}")
    return "\n".join(out)


# --- the features' comparisons (bench/features.py) ------------------------------------------------------


def _ratio(a, b, digits=2):
    if a is None or b is None or not b or (isinstance(a, float) and math.isnan(a)):
        return "–"
    value = a / b
    return f"{value:.{digits}f}×" if value >= 0.1 else f"{value:.2g}×"


def _pct(a, b):
    if a is None or b is None or not b:
        return "–"
    return f"{100 * (a / b - 1):+.1f}%"


def _plus(a, b, digits=2):
    if a is None or b is None:
        return "–"
    return f"{a - b:+.{digits}f}"


def _lat(r):
    return f"{_f(r.p50_ms, 2)} / {_f(r.p99_ms, 2)}" if r else "–"


def _cpu(c1, c32):
    a = c1.cpu_ms_per_request if c1 else None
    b = c32.cpu_ms_per_request if c32 else None
    return f"{_f(a, 2)} / {_f(b, 2)}"


def cache_rows(f, direct_c32):
    """Rows of the response cache's table: direct, uncached, miss, hit, hit vs uncached, hit vs direct."""
    c1, c32 = f.cache_c1, f.cache_c32
    d, u, m, h = (c1.get(k) for k in ("direct", "uncached", "miss", "hit"))
    u32, h32 = c32.get("uncached"), c32.get("hit")
    if not (d and u and m and h and u32 and h32):
        return []

    def per_answer(r):
        return _f(r.upstream_calls / max(r.requests, 1), 2) if r.upstream_calls is not None else "–"

    return [
        (
            "requests/s, concurrency 1",
            [
                _f(d.rps, 0),
                _f(u.rps, 0),
                _f(m.rps, 0),
                _f(h.rps, 0),
                _ratio(h.rps, u.rps),
                _ratio(h.rps, d.rps),
            ],
        ),
        (
            "latency p50 / p99, c=1 (ms)",
            [
                _lat(d),
                _lat(u),
                _lat(m),
                _lat(h),
                f"{_ratio(h.p50_ms, u.p50_ms)} / {_ratio(h.p99_ms, u.p99_ms)}",
                f"{_ratio(h.p50_ms, d.p50_ms, 0)} / {_ratio(h.p99_ms, d.p99_ms, 0)}",
            ],
        ),
        (
            "added over direct p50 / p99, c=1 (ms)",
            [
                "–",
                f"{_plus(u.p50_ms, d.p50_ms)} / {_plus(u.p99_ms, d.p99_ms)}",
                f"{_plus(m.p50_ms, d.p50_ms)} / {_plus(m.p99_ms, d.p99_ms)}",
                f"{_plus(h.p50_ms, d.p50_ms)} / {_plus(h.p99_ms, d.p99_ms)}",
                "–",
                "–",
            ],
        ),
        (
            "requests/s, concurrency 32",
            [
                _f(direct_c32.rps, 0) if direct_c32 else "–",
                _f(u32.rps, 0),
                "–",
                _f(h32.rps, 0),
                _ratio(h32.rps, u32.rps),
                _ratio(h32.rps, direct_c32.rps) if direct_c32 else "–",
            ],
        ),
        (
            "latency p50 / p99, c=32 (ms)",
            [
                _lat(direct_c32),
                _lat(u32),
                "–",
                _lat(h32),
                f"{_ratio(h32.p50_ms, u32.p50_ms)} / {_ratio(h32.p99_ms, u32.p99_ms)}",
                "–",
            ],
        ),
        (
            "CPU per request, c=1 / c=32 (ms)",
            [
                "–",
                _cpu(u, u32),
                _cpu(m, None).replace(" / –", ""),
                _cpu(h, h32),
                f"{_ratio(h.cpu_ms_per_request, u.cpu_ms_per_request)} / "
                f"{_ratio(h32.cpu_ms_per_request, u32.cpu_ms_per_request)}",
                "–",
            ],
        ),
        (
            "upstream (nginx) requests per answer",
            [
                per_answer(d),
                per_answer(measure_sum(u, u32)),
                per_answer(m),
                per_answer(measure_sum(h, h32)),
                "–",
                "–",
            ],
        ),
    ]


def measure_sum(a, b):
    """Two results as one for their counts (requests, upstream calls)."""
    from bench.measure import LoadResult

    calls = None if a.upstream_calls is None else a.upstream_calls + (b.upstream_calls or 0)
    return LoadResult(
        a.requests + b.requests, a.seconds + b.seconds, a.errors + b.errors, 0, 0, 0, 0, upstream_calls=calls
    )


CACHE_HEADER = [
    "direct (no proxy)",
    "uncached (cache off)",
    "miss (cache on, no-cache)",
    "hit",
    "hit vs uncached",
    "hit vs direct",
]


def guard_rows(f):
    n1, g1 = f.guard_c1.get("none"), f.guard_c1.get("guarded")
    n32, g32 = f.guard_c32.get("none"), f.guard_c32.get("guarded")
    ns, gs = f.guard_streams.get("none"), f.guard_streams.get("guarded")
    if not (n1 and g1 and n32 and g32 and ns and gs):
        return []
    return [
        ("requests/s, concurrency 1", [_f(n1.rps, 0), _f(g1.rps, 0), _pct(g1.rps, n1.rps)]),
        (
            "latency p50 / p99, c=1 (ms)",
            [_lat(n1), _lat(g1), f"{_plus(g1.p50_ms, n1.p50_ms)} / {_plus(g1.p99_ms, n1.p99_ms)} ms"],
        ),
        ("requests/s, concurrency 32", [_f(n32.rps, 0), _f(g32.rps, 0), _pct(g32.rps, n32.rps)]),
        (
            "latency p50 / p99, c=32 (ms)",
            [_lat(n32), _lat(g32), f"{_plus(g32.p50_ms, n32.p50_ms)} / {_plus(g32.p99_ms, n32.p99_ms)} ms"],
        ),
        (
            "CPU per request, c=1 / c=32 (ms)",
            [
                _cpu(n1, n32),
                _cpu(g1, g32),
                f"{_pct(g1.cpu_ms_per_request, n1.cpu_ms_per_request)} / "
                f"{_pct(g32.cpu_ms_per_request, n32.cpu_ms_per_request)}",
            ],
        ),
        (
            "stream: first byte p50 / p99 (ms)",
            [
                f"{_f(ns.ttfb_p50, 2)} / {_f(ns.ttfb_p99, 2)}",
                f"{_f(gs.ttfb_p50, 2)} / {_f(gs.ttfb_p99, 2)}",
                f"{_plus(gs.ttfb_p50, ns.ttfb_p50)} / {_plus(gs.ttfb_p99, ns.ttfb_p99)} ms",
            ],
        ),
        (
            "stream: total p50 / p99 (ms)",
            [
                f"{_f(ns.total_p50, 1)} / {_f(ns.total_p99, 1)}",
                f"{_f(gs.total_p50, 1)} / {_f(gs.total_p99, 1)}",
                f"{_pct(gs.total_p50, ns.total_p50)} / {_pct(gs.total_p99, ns.total_p99)}",
            ],
        ),
    ]


GUARD_HEADER = ["no guardrails", "5 guardrails, prompt and answer", "guardrails' cost"]


def trace_rows(f):
    o1, n1 = f.trace_c1.get("off"), f.trace_c1.get("on")
    o32, n32 = f.trace_c32.get("off"), f.trace_c32.get("on")
    if not (o1 and n1 and o32 and n32):
        return []
    spans = f.trace_spans.get("spans", 0)

    def spread(r):
        return " / ".join(_f(x, 0) for x in r.rounds_rps)

    return [
        ("requests/s, concurrency 1", [_f(o1.rps, 0), _f(n1.rps, 0), _pct(n1.rps, o1.rps)]),
        (
            "latency p50 / p99, c=1 (ms)",
            [_lat(o1), _lat(n1), f"{_plus(n1.p50_ms, o1.p50_ms)} / {_plus(n1.p99_ms, o1.p99_ms)} ms"],
        ),
        ("requests/s, concurrency 32", [_f(o32.rps, 0), _f(n32.rps, 0), _pct(n32.rps, o32.rps)]),
        ("requests/s of each round, c=32", [spread(o32), spread(n32), "–"]),
        (
            "latency p50 / p99, c=32 (ms)",
            [_lat(o32), _lat(n32), f"{_plus(n32.p50_ms, o32.p50_ms)} / {_plus(n32.p99_ms, o32.p99_ms)} ms"],
        ),
        (
            "CPU per request, c=1 / c=32 (ms)",
            [
                _cpu(o1, o32),
                _cpu(n1, n32),
                f"{_pct(n1.cpu_ms_per_request, o1.cpu_ms_per_request)} / "
                f"{_pct(n32.cpu_ms_per_request, o32.cpu_ms_per_request)}",
            ],
        ),
        ("spans exported per request", ["–", _f(spans / max(f.trace_answered, 1), 2), "–"]),
    ]


TRACE_HEADER = ["tracing off (default)", "tracing on (OTLP/HTTP to a local sink)", "on vs off"]


def micro_line(f):
    """The tracing hooks' cost when off, against the CPU per request measured with tracing off."""
    if not f.micro:
        return ""
    cpus = [r.cpu_ms_per_request for r in (f.trace_c1.get("off"), f.trace_c32.get("off")) if r]
    cpus = [c for c in cpus if c]
    us = f.micro["best_us"]
    share = ""
    if cpus:
        smallest = min(cpus)
        share = (
            f": {100 * us / (smallest * 1000):.3f}% of the {smallest:.2f} ms of CPU per request "
            f"measured with tracing off (the smaller of c=1 and c=32)"
        )
    return (
        f"Tracing off, the tracing hooks of one request ({', '.join(f.micro['hooks'])}) cost "
        f"{us:.2f} µs of CPU (best of {f.micro['rounds']} rounds of {f.micro['iterations']:,}; median "
        f"{f.micro['median_us']:.2f} µs){share}."
    )


def _direct_c32(targets):
    direct = next((t for t in targets if t.name == "direct" and _done(t)), None)
    return direct.c32 if direct else None


def features_section(f, targets) -> str:
    parts = [
        f"## Response cache, guardrails and tracing (issues 7, 13 and 9), {f.server}",
        "",
        f"Each comparison in the same process (tracing: a second process of the same server), the "
        f"variants interleaved: {f.rounds} rounds of {f.seconds:g} s of wrk per variant and concurrency "
        f"(a b a b ...), "
        f"requests/s over all rounds, p50 and p99 the median of the rounds'; streams: {f.stream_rounds} "
        f"rounds of {f.streams}. Every tenant has the same three quota limits, usage rows and metrics as "
        "`bench`; only the feature differs. Compare the ratios: the absolute figures move with the "
        "machine's load.",
        "",
        "### Response cache (issue 7)",
        "",
        "The main table's plain request to tenant `bench-cache` (response cache on, primed: every request "
        "a hit), against the same request to `bench` (cache off), as a miss (`Cache-Control: no-cache`: "
        "sent upstream and stored) and to nginx directly.",
        "",
        _markdown(CACHE_HEADER, cache_rows(f, _direct_c32(targets))),
        "",
        "### Guardrails (issue 13)",
        "",
        "A 2 kB prompt (a support ticket with order numbers, amounts, dates and a stack trace; nothing the "
        "rules match) to tenant `bench-guard`, five rules on prompts and answers (cards: mask, emails: mask, "
        "secrets: block, an employee-id regex: mask, a codename regex: flag), against the same prompt to "
        "`bench` (no rules). Streams: the SSE upstream's 20 chunks through the response rules' masker.",
        "",
        _markdown(GUARD_HEADER, guard_rows(f)),
        "",
        "### Tracing (issue 9)",
        "",
        "The proxy with tracing off against a second process of the same server with "
        "`OTEL_EXPORTER_OTLP_ENDPOINT` set (batch export, the SDK's defaults) to a local OTLP/HTTP sink "
        "(`bench/otlp_sink.py`, on the load generator's core), the main table's plain request.",
        "",
        _markdown(TRACE_HEADER, trace_rows(f)),
        "",
        micro_line(f),
        "",
        "### What shows they measured what they say",
        "",
        *(f"- {line}" for line in f.evidence),
        "",
    ]
    if f.failures:
        parts += ["**Failed:**", "", *(f"- {line}" for line in f.failures), ""]
    return "\n".join(parts)


def terminal_features(f, targets) -> str:
    out = [
        f"Response cache, {f.server} (interleaved {f.rounds} x {f.seconds:g} s):",
        _text(CACHE_HEADER, cache_rows(f, _direct_c32(targets))),
        "",
        "Guardrails (2 kB prompt, 5 rules on prompt and answer):",
        _text(GUARD_HEADER, guard_rows(f)),
        "",
        "Tracing:",
        _text(TRACE_HEADER, trace_rows(f)),
        micro_line(f),
    ]
    return "\n".join(out)


def _verdict(ok):
    return "holds" if ok else "**does not hold**"


def targets_table(targets):
    direct = next((t for t in targets if t.name == "direct" and _done(t)), None)
    litellm = next((t for t in targets if t.name == "litellm" and _done(t)), None)
    lines = ["| target | measured | verdict |", "| --- | --- | --- |"]
    for t in targets:
        if t.name not in TARGET_RPS or not _done(t):
            continue
        name = t.label
        errors = _errors(t)
        goal = TARGET_RPS[t.name]
        lines.append(
            f"| {name}: ≥ {goal:,} requests/s at c=32, 0 errors | {t.c32.rps:,.0f}/s, {errors} errors "
            f"| {_verdict(t.c32.rps >= goal and errors == 0)} |"
        )
        if litellm:
            ratio = t.c32.rps / litellm.c32.rps
            lines.append(
                f"| {name}: ≥ {TARGET_VS_LITELLM}× LiteLLM's throughput | {ratio:.1f}× "
                f"| {_verdict(ratio >= TARGET_VS_LITELLM)} |"
            )
        if direct:
            p50 = t.c1.p50_ms - direct.c1.p50_ms
            p99 = t.c1.p99_ms - direct.c1.p99_ms
            lines.append(
                f"| {name}: added latency p50 ≤ {TARGET_ADDED_P50_MS} ms, p99 ≤ {TARGET_ADDED_P99_MS} ms "
                f"| +{p50:.2f} / +{p99:.2f} ms "
                f"| {_verdict(p50 <= TARGET_ADDED_P50_MS and p99 <= TARGET_ADDED_P99_MS)} |"
            )
            ttfb = t.stream.ttfb_p50 - direct.stream.ttfb_p50
            total = t.stream.total_p50 / direct.stream.total_p50 - 1
            lines.append(
                f"| {name}: stream first byte ≤ {TARGET_TTFB_ADDED_MS} ms over direct | +{ttfb:.2f} ms "
                f"| {_verdict(ttfb <= TARGET_TTFB_ADDED_MS)} |"
            )
            lines.append(
                f"| {name}: stream total within {TARGET_STREAM_TOTAL:.0%} of direct | {total:+.1%} "
                f"| {_verdict(abs(total) <= TARGET_STREAM_TOTAL)} |"
            )
        if t.rss_start:
            end = t.soak[-1][1] if t.soak else t.rss_end
            drift = end / t.rss_start - 1
            span = f"over a {t.soak[-1][0]:.0f} s soak" if t.soak else "over this run (not a 10-minute soak)"
            lines.append(
                f"| {name}: memory < {TARGET_RSS_MB} MB and flat (±{TARGET_RSS_DRIFT:.0%}) "
                f"| {t.rss_start:.0f} → {end:.0f} MiB ({drift:+.1%}) {span} "
                f"| {_verdict(end < TARGET_RSS_MB and abs(drift) <= TARGET_RSS_DRIFT)} |"
            )
    lines.append(
        "| two processes on two cores ≥ 1.7× one | not measured: this machine has 2 cores, and one "
        "must carry the load generator | – |"
    )
    return "\n".join(lines)


def checks_section(targets):
    lines = [
        "| | quota limit 1/hour: statuses of 3 requests | usage rows written (status 200) / 200 answers "
        "| `/metrics` requests (status 200) |",
        "| --- | --- | --- | --- |",
    ]
    for t in targets:
        if not t.checks:
            continue
        quota = t.checks.get("quota", {})
        usage = t.checks.get("usage", {})
        answered = t.checks.get("answered_200")
        metrics = t.checks.get("metrics_200")
        lines.append(
            f"| {t.label} | {quota.get('statuses')} (Retry-After {quota.get('retry_after')}) "
            f"| {usage.get('rows_200')} / {answered} ({usage.get('rows')} rows in all) "
            f"| {_f(metrics, 0)} |"
        )
    return "\n".join(lines)


def render(targets, meta, args) -> str:
    load = ", ".join(f"{x:.2f}" for x in meta["load_before"])
    quiet = meta["load_before"][0] < 0.5
    parts = [
        f"# Benchmark, {meta['date']}",
        "",
    ]
    if meta.get("failures"):
        parts += [
            "**THE BENCH FAILED: a comparison did not measure what it says.**",
            "",
            *(f"- {line}" for line in meta["failures"]),
            "",
        ]
    parts += [
        f"Commit {meta['commit']}. {meta['cpus']} cores ({meta['cpu_model']}), Python {meta['python']}. "
        f"Load average before the run: {load}"
        + ("." if quiet else " — **the machine was not quiet: figures are noisy; compare the ratios**."),
        "",
        f"Every proxy on core {args.proxy_cpu} alone; wrk 4 (1 thread), nginx (1 worker, fixed completion) "
        f"and the SSE upstream (20 chunks, 5 ms apart) on core {args.client_cpu}. "
        f"Each wrk run lasts {args.duration:g} s after {args.warmup:g} s of warm-up; {args.streams} streams "
        f"one at a time. CPU per request is the server's user + system time (`/proc/<pid>/stat`) over the "
        f"requests answered. The whole run took {meta['duration_s'] / 60:.1f} minutes.",
        "",
        "llmproxy runs on PostgreSQL and Redis with every feature on: key authentication, three quota "
        "limits checked and reserved on every request (tenant requests/minute, tenant tokens/hour, key "
        "cost/day) and settled after it, a usage row written per request, Prometheus metrics. Daphne with "
        "`-v 0` and uvicorn with `--no-access-log` (no access log line per request); uvicorn ran with "
        f"{meta['uvicorn_impl']}. "
        "LiteLLM runs with its master key and the same two models on the same upstreams, no database.",
        "",
        "## Figures",
        "",
        markdown_table(targets),
        "",
    ]
    for t in targets:
        if t.skipped:
            parts += [f"{t.label} was not measured: {t.skipped}", ""]
    parts += [
        "## Targets (issue 10)",
        "",
        targets_table(targets),
        "",
        "## Every feature was on",
        "",
        checks_section(targets),
        "",
    ]
    for t in targets:
        if t.features:
            parts += [features_section(t.features, targets), ""]
    for t in targets:
        if t.soak:
            series = ", ".join(f"{s:.0f}s {mb:.0f}" for s, mb in t.soak)
            parts += [
                f"Soak, {t.label}: {t.checks.get('soak_requests')} requests, "
                f"{t.checks.get('soak_errors')} errors; RSS (MiB) {series}.",
                "",
            ]
    for t in targets:
        if t.profile:
            parts += [f"## Profile: {t.label}, concurrency 32", "", t.profile, ""]
    return "\n".join(parts)
