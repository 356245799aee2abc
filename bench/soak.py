"""Soak: two proxy processes under a sustained mix, then count what they kept.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python -m bench.soak --duration 600

Starts the mock upstream and two Daphne processes on DATABASE_URL and
REDIS_URL, sets up a tenant of its own (migrating first), and for DURATION
seconds sends a mix through both: plain and streamed chat, embeddings, a key
with a small per-minute quota (429s) and a route whose upstream fails (502s,
then 503s once its breaker opens). Then it stops the proxies with SIGTERM and prints, as JSON: requests sent,
answers by status, 5xx the upstream did not cause, RequestLog rows written
(which must equal requests), and each proxy's RSS at the start and the end.
The test suite runs a 20-second version (tests/test_reliability_soak.py).
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from bench import procs

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
QUOTA_PER_MINUTE = 20
# Shares of the mix: (kind, weight).
MIX = [("chat", 50), ("stream", 25), ("embeddings", 15), ("limited", 5), ("failing", 5)]
HELLO = [{"role": "user", "content": "Hello from the soak"}]


def prepare(mock_upstream: str) -> dict:
    """A tenant of this run with its keys and routes (needs Django set up)."""
    from keys.services import api_key_create
    from providers.models import ModelRoute, Provider
    from quotas.models import QuotaLimit
    from tenants.models import Tenant

    run = uuid.uuid4().hex[:8]
    tenant = Tenant.objects.create(slug=f"soak-{run}", name="soak")
    provider = Provider.objects.create(
        name=f"soak-{run}",
        kind="openai_compatible",
        tenant=tenant,
        base_url=f"{mock_upstream}/v1",
        timeout_seconds=30,
    )
    model, failing = f"soak-{run}", f"soak-{run}-failing"
    ModelRoute.objects.create(model=model, provider=provider, upstream_model="mock-1?chunks=8", tenant=tenant)
    ModelRoute.objects.create(
        model=failing, provider=provider, upstream_model="mock-1?fail_status=500", tenant=tenant
    )
    _, plain = api_key_create(tenant=tenant, name="soak")
    limited_key, limited = api_key_create(tenant=tenant, name="soak-limited")
    QuotaLimit.objects.create(
        tenant=tenant,
        scope="key",
        api_key=limited_key,
        metric="requests",
        period="minute",
        limit=QUOTA_PER_MINUTE,
    )
    return {"tenant_id": tenant.id, "model": model, "failing": failing, "key": plain, "limited_key": limited}


def start(env: dict, log_dir: Path) -> tuple[procs.Process, list[procs.Process], str, list[str]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    argv = [sys.executable, "-m", "providers.mock_server", "--port", str(port)]
    upstream = procs.Process(
        "soak-upstream", argv, cpu=0, log_dir=log_dir, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    mock = f"http://127.0.0.1:{port}"
    procs.wait_http(f"{mock}/v1/models", upstream)
    proxies, bases = [], []
    for i in range(2):
        port = procs.free_port()
        argv = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "llmproxy.asgi:application"]
        process = procs.Process(
            f"soak-daphne-{i + 1}",
            argv,
            cpu=i % max(1, os.cpu_count() or 1),
            log_dir=log_dir,
            cwd=ROOT,
            env=env,
        )
        proxies.append(process)
        bases.append(f"http://127.0.0.1:{port}")
    for process, base in zip(proxies, bases, strict=True):
        procs.wait_http(f"{base}/healthz", process)
    return upstream, proxies, mock, bases


async def drive(bases: list[str], plan: dict, duration: float, concurrency: int, seed: int) -> dict:
    statuses: Counter = Counter()
    unexpected: Counter = Counter()
    kinds: Counter = Counter()
    rng = random.Random(seed)
    names, weights = zip(*MIX, strict=True)
    deadline = time.monotonic() + duration

    async def one(http, base, kind):
        key = plan["limited_key"] if kind == "limited" else plan["key"]
        model = plan["failing"] if kind == "failing" else plan["model"]
        headers = {"authorization": f"Bearer {key}"}
        if kind == "embeddings":
            response = await http.post(
                f"{base}/v1/embeddings", headers=headers, json={"model": model, "input": "hi"}
            )
            return response.status_code
        body = {"model": model, "messages": HELLO, "stream": kind == "stream"}
        async with http.stream("POST", f"{base}/v1/chat/completions", headers=headers, json=body) as response:
            async for _ in response.aiter_bytes():
                pass
            return response.status_code

    async def worker(n):
        async with httpx.AsyncClient(timeout=60) as http:
            i = n
            while time.monotonic() < deadline:
                kind = rng.choices(names, weights)[0]
                base = bases[i % len(bases)]
                i += 1
                kinds[kind] += 1
                try:
                    status = await one(http, base, kind)
                except httpx.HTTPError as exc:
                    status = f"client error: {type(exc).__name__}"
                statuses[str(status)] += 1
                if not isinstance(status, int) or (status >= 500 and kind != "failing"):
                    unexpected[str(status)] += 1

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return {
        "requests": sum(statuses.values()),
        "by_status": dict(statuses),
        "by_kind": dict(kinds),
        "unexpected": dict(unexpected),
    }


def run(env: dict, log_dir: Path, *, duration: float, concurrency=8, seed=1) -> dict:
    """The soak against the database Django is set up on (the proxies' env must point at the same one)."""
    from audit.models import RequestLog

    upstream, proxies, mock, bases = start(env, log_dir)
    try:
        plan = prepare(mock)
        time.sleep(1.0)  # let both processes import and warm their pools before measuring memory
        rss_start = [round(procs.rss_mb(p.pid), 1) for p in proxies]
        samples = []
        sampler = threading.Thread(
            target=_sample_rss, args=(proxies, samples, duration), daemon=True, name="rss-sampler"
        )
        sampler.start()
        result = asyncio.run(drive(bases, plan, duration, concurrency, seed))
        rss_end = [round(procs.rss_mb(p.pid), 1) for p in proxies]
        sampler.join(timeout=5)
    finally:
        for process in proxies:
            process.stop()  # SIGTERM: the proxies write what they still hold
        upstream.stop()
    rows = RequestLog.objects.filter(tenant_id=plan["tenant_id"]).count()
    return {
        **result,
        "duration_s": duration,
        "rows": rows,
        "rows_match": rows == result["requests"],
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        # Each proxy's RSS every tenth of the run: warm-up growth (pools, caches, the tokenizer)
        # comes first; a leak would go on rising until the end.
        "rss_samples_mb": samples,
        "rss_growth_after_first_tenth_mb": [
            round(end - first, 1)
            for end, first in zip(rss_end, samples[0][1] if samples else rss_start, strict=True)
        ],
    }


def _sample_rss(proxies, samples, duration):
    every = duration / 10
    started = time.monotonic()
    for i in range(1, 10):
        time.sleep(max(0.0, started + i * every - time.monotonic()))
        samples.append([round(i * every), [round(procs.rss_mb(p.pid), 1) for p in proxies]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--log-dir", type=Path, default=ROOT / "var" / "soak")
    args = parser.parse_args()
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OTEL_"))}
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/llmproxy_soak")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    env.setdefault("LLMPROXY_ENCRYPTION_KEY", Fernet.generate_key().decode())
    env.setdefault("LLMPROXY_REDIS_KEY_PREFIX", "lpsoak")
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "llmproxy.settings",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "LLMPROXY_VAR_DIR": str(args.log_dir),
        }
    )
    if env["DATABASE_URL"].startswith("postgres"):
        _create_database(env["DATABASE_URL"])
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    import django

    django.setup()
    report = run(env, args.log_dir, duration=args.duration, concurrency=args.concurrency)
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["rows_match"] and not report["unexpected"] else 1)


def _create_database(url: str):
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
