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


def markdown_table(targets):
    header = "| | " + " | ".join(t.label for t in targets) + " |"
    lines = [header, "| --- |" + " ---: |" * len(targets)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows(targets)]
    return "\n".join(lines)


def terminal_table(targets):
    table = [["", *(t.label for t in targets)], *([label, *cells] for label, cells in rows(targets))]
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
    for t in targets:
        if t.skipped:
            out.append(f"{t.label}: not measured: {t.skipped}")
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
