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

BENCH = Path(__file__).resolve().parent

CHAT_BODY = json.dumps(
    {
        "model": "bench",
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 64,
    }
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

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.errors


def wrk(url: str, *, key: str, connections: int, seconds: float, cpu: int) -> LoadResult:
    env = dict(os.environ, BENCH_BODY=CHAT_BODY, BENCH_KEY=key)
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


def streams(url: str, *, key: str, model: str, count: int, warmup: int, cpu: int) -> StreamResult:
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
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return StreamResult(r["ttfb_ms"], r["total_ms"], r["errors"], r["warmup_ok"])


def _percentile(values, pct):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]
