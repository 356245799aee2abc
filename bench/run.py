"""`make bench`: the proxy against the direct call and against LiteLLM, in one run, on pinned cores.

    .venv/bin/python -m bench.run [--duration 10] [--streams 100] [--servers daphne,uvicorn,litellm]
                                  [--profile] [--soak SECONDS] [--features uvicorn|daphne|none]

What it starts (each in its own process group, stopped at the end):
- nginx (Debian's, installed with apt-get when missing) answering a fixed chat
  completion, and bench/upstream_sse.py streaming 20 chunks 5 ms apart: the
  upstreams, on the load generator's core;
- the proxy on PostgreSQL (a database of its own, created anew) and Redis (keys
  under their own prefix), with every feature on: key authentication, three
  quota limits checked and reserved on every request, usage rows written,
  Prometheus metrics; under Daphne, then under uvicorn; pinned to its own core;
- LiteLLM's proxy (from PyPI, into bench/.venv-litellm) with its master key and
  the same two models on the same upstreams, pinned to the same core.

Each is measured the same way: wrk at concurrency 1 (latency) and 32
(throughput), 100 streams one at a time (time to first byte, total), CPU time
from /proc/<pid>/stat, RSS. Then, on one of our servers (--features), the
response cache, guardrails and tracing against the same server without them
(bench/features.py; bench/otlp_sink.py collects the spans). Results go to
bench/results/<date>.md and bench/results/latest.md, and the tables are printed;
a comparison that fails its checks makes the run exit 1.
"""

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import measure, procs, profile, report
from bench.features import Features, Rig, UpstreamCounter, metric_total, scrape
from bench.features import run as run_features

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_MASTER_KEY = "sk-bench-master"
STREAM_CHUNKS = 20
CHUNK_DELAY_MS = 5.0


@dataclass
class Target:
    name: str  # direct, daphne, uvicorn, litellm
    label: str
    url: str = ""
    stream_url: str = ""
    key: str = ""
    stream_model: str = "bench-stream"
    process: procs.Process | None = None
    skipped: str = ""  # why it was not measured
    c1: measure.LoadResult | None = None
    c32: measure.LoadResult | None = None
    stream: measure.StreamResult | None = None
    warmup_ok: int = 0
    rss_idle: float | None = None
    rss_start: float | None = None
    rss_end: float | None = None
    checks: dict = field(default_factory=dict)  # what proves every feature was on
    profile: str = ""
    soak: list = field(default_factory=list)  # (seconds, RSS MiB)
    features: Features | None = None  # response cache, guardrails, tracing (bench/features.py)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load per target")
    parser.add_argument("--streams", type=int, default=100, help="streams measured per target (default 100)")
    parser.add_argument(
        "--servers",
        default="daphne,uvicorn,litellm",
        help="which to measure besides the direct call (default daphne,uvicorn,litellm)",
    )
    parser.add_argument("--proxy-cpu", type=int, default=1, help="core of the proxies (default 1)")
    parser.add_argument(
        "--client-cpu",
        type=int,
        default=0,
        help="core of wrk, the stream client and the upstreams (default 0)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the proxy with py-spy under load and report where the time goes",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also load each of our servers for this long and follow its memory",
    )
    parser.add_argument(
        "--features",
        default="uvicorn",
        metavar="SERVER",
        help="the server on which response cache, guardrails and tracing are compared "
        "(default uvicorn, else the first of ours; 'none': not compared)",
    )
    parser.add_argument(
        "--feature-duration",
        type=float,
        default=3.0,
        help="seconds of each wrk run of a comparison (default 3)",
    )
    parser.add_argument(
        "--feature-rounds", type=int, default=3, help="interleaved rounds of each comparison (default 3)"
    )
    parser.add_argument(
        "--feature-streams",
        type=int,
        default=30,
        help="streams per variant and round in the guardrails' comparison (2 rounds; default 30)",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the run's scratch directory (every process's output) instead of deleting it",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory of the markdown results")
    args = parser.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(servers) - {"daphne", "uvicorn", "litellm"}
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    ours = [s for s in servers if s != "litellm"]
    if args.features != "none" and args.features not in ours:
        if args.features not in ("daphne", "uvicorn"):
            parser.error(f"--features: {args.features} is not one of our servers (daphne, uvicorn, none)")
        args.features = ours[0] if ours else "none"

    started = dt.datetime.now(dt.UTC)
    meta = machine_facts(args)
    ensure_tools()
    pg_url, redis_url = ensure_services()
    litellm_problem = ensure_litellm() if "litellm" in servers else ""

    run_dir = Path(tempfile.mkdtemp(prefix="llmproxy-bench-"))
    running: list[procs.Process] = []
    targets: list[Target] = []
    try:
        nginx_port, sse_port = procs.free_port(), procs.free_port()
        running.append(start_nginx(run_dir, nginx_port, args.client_cpu))
        sse = procs.Process(
            "upstream-sse",
            [
                sys.executable,
                str(BENCH / "upstream_sse.py"),
                "--port",
                str(sse_port),
                "--chunks",
                str(STREAM_CHUNKS),
                "--chunk-delay-ms",
                str(CHUNK_DELAY_MS),
            ],
            cpu=args.client_cpu,
            log_dir=run_dir,
        )
        running.append(sse)
        sink_port = procs.free_port()
        sink = None
        if args.features != "none":
            sink = procs.Process(
                "otlp-sink",
                [sys.executable, str(BENCH / "otlp_sink.py"), "--port", str(sink_port)],
                cpu=args.client_cpu,
                log_dir=run_dir,
            )
            running.append(sink)
        wait_port(nginx_port, running[0])
        wait_port(sse_port, sse)
        if sink is not None:
            wait_port(sink_port, sink)

        direct = Target(
            "direct",
            "direct (no proxy)",
            url=f"http://127.0.0.1:{nginx_port}/v1/chat/completions",
            stream_url=f"http://127.0.0.1:{sse_port}/v1/chat/completions",
        )
        step(f"direct: nginx on :{nginx_port}, SSE upstream on :{sse_port}")
        measure_target(direct, args)
        targets.append(direct)

        proxy_env = None
        keys = {}
        rig = Rig(
            proxy_cpu=args.proxy_cpu,
            client_cpu=args.client_cpu,
            direct_url=direct.url,
            upstream_count=UpstreamCounter(nginx_port),
            sink_url=f"http://127.0.0.1:{sink_port}",
            env={},
            run_dir=run_dir,
            argv_for=None,
            step=step,
            rounds=args.feature_rounds,
            seconds=args.feature_duration,
            streams=args.feature_streams,
        )
        if ours:
            step("database: llmproxy_bench created anew, migrated, filled through the proxy's commands")
            proxy_env = proxy_environment(pg_url, redis_url, run_dir)
            keys = prepare_database(proxy_env, pg_url, redis_url, nginx_port, sse_port, ours)
        for server in ours:
            target = Target(server, server_label(server))
            targets.append(target)
            try:
                run_our_server(target, server, proxy_env, keys, args, run_dir, rig)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                target.skipped = f"it failed: {str(exc).splitlines()[0]}"
                step(f"{server}: {target.skipped}\n{target.process.tail() if target.process else ''}")
        if "litellm" in servers:
            target = Target("litellm", litellm_label())
            targets.append(target)
            if litellm_problem:
                target.skipped = litellm_problem
                step(f"litellm: not measured: {litellm_problem}")
            else:
                run_litellm(target, nginx_port, sse_port, args, run_dir)
    finally:
        for process in reversed(running):
            process.stop()

    meta["duration_s"] = (dt.datetime.now(dt.UTC) - started).total_seconds()
    failures = [f"{t.label}: {problem}" for t in targets if t.features for problem in t.features.failures]
    meta["failures"] = failures
    text = report.render(targets, meta, args)
    args.output.mkdir(parents=True, exist_ok=True)
    dated = args.output / f"{started:%Y-%m-%d-%H%M}.md"
    dated.write_text(text)
    shutil.copyfile(dated, args.output / "latest.md")
    if args.keep_logs:
        print(f"the processes' output is in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    print()
    print(report.terminal_table(targets))
    for t in targets:
        if t.features:
            print()
            print(report.terminal_features(t.features, targets))
    print(
        f"\nresults: {dated.relative_to(ROOT) if dated.is_relative_to(ROOT) else dated} "
        f"(and {args.output / 'latest.md'})"
    )
    if failures:
        print("\nTHE BENCH FAILED: a comparison did not measure what it says:", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        sys.exit(1)


# --- set-up -----------------------------------------------------------------------------------------


def step(message):
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def machine_facts(args) -> dict:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "load_before": os.getloadavg(),
        "commit": (commit or "unknown") + (" (with uncommitted changes)" if dirty else ""),
        "uvicorn_impl": uvicorn_impl(),
    }


def uvicorn_impl() -> str:
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} loop, {http} parser"


def ensure_tools():
    missing = [
        tool
        for tool in ("nginx", "wrk", "taskset")
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if not missing:
        return
    packages = {"nginx": "nginx", "wrk": "wrk", "taskset": "util-linux"}
    wanted = sorted({packages[t] for t in missing})
    step(f"installing Debian's {', '.join(wanted)} (apt-get)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", *wanted], check=True, env=env, stdout=subprocess.DEVNULL
    )


def ensure_services() -> tuple[str, str]:
    """PostgreSQL and Redis, started the way .ci/run starts them when they do not answer."""
    pg_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/llmproxy_bench")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    pg, rd = urllib.parse.urlsplit(pg_url), urllib.parse.urlsplit(redis_url)
    pg_host, pg_port = pg.hostname or "127.0.0.1", str(pg.port or 5432)
    rd_host, rd_port = rd.hostname or "127.0.0.1", str(rd.port or 6379)

    def pg_answers():
        return subprocess.run(["pg_isready", "-q", "-h", pg_host, "-p", pg_port]).returncode == 0

    def redis_answers():
        out = subprocess.run(
            ["redis-cli", "-h", rd_host, "-p", rd_port, "ping"], capture_output=True, text=True
        )
        return out.stdout.strip() == "PONG"

    if not pg_answers() and Path("/etc/postgresql").is_dir():
        step("starting PostgreSQL")
        for version in sorted(os.listdir("/etc/postgresql")):
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"])
        wait_for(pg_answers, 30)
    if not redis_answers() and shutil.which("redis-server"):
        step("starting Redis")
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                rd_host,
                "--port",
                rd_port,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(redis_answers, 30)
    if not pg_answers():
        sys.exit(f"PostgreSQL does not answer at {pg_host}:{pg_port} (set BENCH_DATABASE_URL)")
    if not redis_answers():
        sys.exit(f"Redis does not answer at {rd_host}:{rd_port} (set BENCH_REDIS_URL)")
    return pg_url, redis_url


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.5)


def ensure_litellm() -> str:
    """LiteLLM in its own virtualenv; returns why it cannot be had, or ''."""
    requirements = BENCH / "litellm-requirements.txt"
    marker = LITELLM_VENV / ".installed"
    if marker.exists() and marker.read_text() == requirements.read_text():
        return ""
    step("installing LiteLLM into bench/.venv-litellm (once; a minute or two)")
    python = shutil.which("python3") or sys.executable
    try:
        if not (LITELLM_VENV / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [
            str(LITELLM_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
        ]
        result = subprocess.run([*pip, "-r", str(requirements)], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"its virtualenv could not be created ({exc})"
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        return "pip could not install it: " + (" ".join(errors)[-400:] or f"exit {result.returncode}")
    marker.write_text(requirements.read_text())
    return ""


def litellm_label() -> str:
    version = ""
    with contextlib.suppress(OSError):
        for line in (BENCH / "litellm-requirements.txt").read_text().splitlines():
            if line.startswith("litellm=="):
                version = line.split("==", 1)[1]
    return f"LiteLLM {version}".strip()


def server_label(server):
    return {"daphne": "llmproxy, Daphne", "uvicorn": "llmproxy, uvicorn"}[server]


def start_nginx(run_dir: Path, port: int, cpu: int) -> procs.Process:
    conf = (BENCH / "nginx.conf").read_text()
    conf = (
        conf.replace("@RUN_DIR@", str(run_dir))
        .replace("@PORT@", str(port))
        .replace("@CPU_MASK@", format(1 << cpu, "b"))
    )
    path = run_dir / "nginx.conf"
    path.write_text(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return procs.Process("nginx", [nginx, "-c", str(path), "-p", str(run_dir)], cpu=cpu, log_dir=run_dir)


def wait_port(port, process, timeout=20.0):
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} is not listening on {port}:\n{process.tail()}")


def proxy_environment(pg_url, redis_url, run_dir) -> dict:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LLMPROXY_", "OTEL_"))}
    env.update(
        {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            "LLMPROXY_REDIS_KEY_PREFIX": os.environ.get("BENCH_REDIS_KEY_PREFIX", "lpbench"),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "LLMPROXY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "LLMPROXY_VAR_DIR": str(run_dir),
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def prepare_database(env, pg_url, redis_url, nginx_port, sse_port, servers) -> dict:
    import psycopg
    import redis

    url = urllib.parse.urlsplit(pg_url)
    name = url.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        sys.exit(f"unexpected database name {name!r} in BENCH_DATABASE_URL")
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    # Only this bench's own keys: the Redis may be shared with tests and other deployments.
    client = redis.Redis.from_url(redis_url)
    prefix = env["LLMPROXY_REDIS_KEY_PREFIX"]
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.unlink(key)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.db",
            "setup",
            "--nginx-port",
            str(nginx_port),
            "--sse-port",
            str(sse_port),
            "--servers",
            ",".join(servers),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- measuring ----------------------------------------------------------------------------------------


def measure_target(t: Target, args):
    pid = t.process.pid if t.process else None
    if pid:
        t.rss_idle = procs.rss_mb(pid)
    # Warm-up: connection pools, caches, the first call of every code path.
    warm = measure.wrk(t.url, key=t.key, connections=32, seconds=args.warmup, cpu=args.client_cpu)
    t.warmup_ok = warm.ok
    if pid:
        t.rss_start = procs.rss_mb(pid)
    cpu0 = procs.cpu_seconds(pid) if pid else 0.0
    t.c1 = measure.wrk(t.url, key=t.key, connections=1, seconds=args.duration, cpu=args.client_cpu)
    cpu1 = procs.cpu_seconds(pid) if pid else 0.0
    t.c32 = measure.wrk(t.url, key=t.key, connections=32, seconds=args.duration, cpu=args.client_cpu)
    cpu2 = procs.cpu_seconds(pid) if pid else 0.0
    if pid:
        t.c1.cpu_ms_per_request = (cpu1 - cpu0) * 1000 / max(t.c1.requests, 1)
        t.c32.cpu_ms_per_request = (cpu2 - cpu1) * 1000 / max(t.c32.requests, 1)
    t.stream = measure.streams(
        t.stream_url, key=t.key, model=t.stream_model, count=args.streams, warmup=5, cpu=args.client_cpu
    )
    if pid:
        t.rss_end = procs.rss_mb(pid)
    step(
        f"{t.name}: c=1 {t.c1.rps:.0f} rps p50 {t.c1.p50_ms:.2f} ms; c=32 {t.c32.rps:.0f} rps; "
        f"stream ttfb {t.stream.ttfb_p50:.2f} ms total {t.stream.total_p50:.1f} ms; "
        f"errors {t.c1.errors + t.c32.errors + len(t.stream.errors)}"
    )


def server_argv(server: str, port: int) -> list[str]:
    if server == "daphne":
        # -v 0: no access log line per request (the proxy's own usage rows are its request log).
        return [
            str(Path(sys.executable).parent / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "-v",
            "0",
            "llmproxy.asgi:application",
        ]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "llmproxy.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def run_our_server(t: Target, server, env, keys, args, run_dir, rig: Rig):
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    t.url, t.stream_url, t.key = f"{base}/v1/chat/completions", f"{base}/v1/chat/completions", keys["key"]
    argv = server_argv(server, port)
    since = dt.datetime.now(dt.UTC).isoformat()
    step(f"{server}: starting on :{port}, pinned to core {args.proxy_cpu}")
    t.process = procs.Process(server, argv, cpu=args.proxy_cpu, log_dir=run_dir, env=env, cwd=ROOT)
    try:
        procs.wait_http(f"{base}/healthz", t.process)
        t.checks["quota"] = check_quota(t.url, keys["tight_keys"][server])
        measure_target(t, args)
        if args.profile:
            step(f"{server}: profiling under load (py-spy)")
            t.profile, answered = profile.sample(t.process.pid, t.url, t.key, args)
            t.warmup_ok += answered
        if server == args.features:
            rig = dataclasses.replace(rig, env=env, argv_for=lambda p: server_argv(server, p))
            t.features = run_features(t, keys, rig)
            # The comparisons' answers to tenant bench are usage rows and counted requests of this process.
            t.warmup_ok += t.features.answered["bench"]
        if args.soak:
            step(f"{server}: soak for {args.soak:.0f}s")
            t.soak = soak(t, args)
        t.checks["metrics_200"] = metrics_count(base)
        time.sleep(1.5)  # one usage flush interval and a bit: every record of the run reaches the database
    finally:
        t.process.stop()
    answered = (t.warmup_ok + t.c1.ok + t.c32.ok + t.stream.ok + t.stream.warmup_ok) if t.stream else 0
    t.checks["answered_200"] = answered
    out = subprocess.run(
        [sys.executable, "-m", "bench.db", "usage", "--since", since],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    t.checks["usage"] = json.loads(out.strip().splitlines()[-1])
    if t.features:
        for slug, rows in t.checks["usage"].get("tenants", {}).items():
            answered = t.features.answered[slug]
            hits = f", {rows['cache_hits']:,} of them cache hits" if slug == "bench-cache" else ""
            t.features.evidence.append(
                f"usage rows of tenant {slug}: {rows['rows_200']:,} with status 200{hits}, for "
                f"{answered:,} answers counted by the clients ({rows['rows']:,} rows in all)"
            )


def run_litellm(t: Target, nginx_port, sse_port, args, run_dir):
    port = procs.free_port()
    config = (BENCH / "litellm.yaml").read_text()
    config = (
        config.replace("@NGINX_PORT@", str(nginx_port))
        .replace("@SSE_PORT@", str(sse_port))
        .replace("@MASTER_KEY@", LITELLM_MASTER_KEY)
    )
    path = run_dir / "litellm.yaml"
    path.write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "OPENAI", "DATABASE_URL"))}
    # The model cost map ships in the package: without this LiteLLM fetches it from the internet at start.
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "PYTHONUNBUFFERED": "1"})
    argv = [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    base = f"http://127.0.0.1:{port}"
    t.url, t.stream_url, t.key = (
        f"{base}/v1/chat/completions",
        f"{base}/v1/chat/completions",
        LITELLM_MASTER_KEY,
    )
    step(f"litellm: starting on :{port}, pinned to core {args.proxy_cpu}")
    t.process = procs.Process("litellm", argv, cpu=args.proxy_cpu, log_dir=run_dir, env=env, cwd=run_dir)
    try:
        procs.wait_http(f"{base}/health/liveliness", t.process, timeout=120)
        measure_target(t, args)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        t.skipped = f"it did not run here: {str(exc).splitlines()[0]}"
        step(f"litellm: {t.skipped}\n{t.process.tail()}")
    finally:
        t.process.stop()


def check_quota(url, tight_key) -> dict:
    """Three requests with a key limited to one request an hour: the first is admitted, the others get 429."""
    statuses, retry_after, ratelimit = [], None, None
    for _ in range(3):
        request = urllib.request.Request(
            url,
            data=measure.CHAT_BODY.encode(),
            method="POST",
            headers={"authorization": f"Bearer {tight_key}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                statuses.append(response.status)
                ratelimit = response.headers.get("x-ratelimit-remaining-requests")
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
            retry_after = exc.headers.get("retry-after")
    return {
        "statuses": statuses,
        "admitted": statuses.count(200),
        "refused": statuses.count(429),
        "retry_after": retry_after,
        "remaining_after_first": ratelimit,
    }


def metrics_count(base) -> float | None:
    """llmproxy_requests_total of tenant bench with status 200, from /metrics."""
    try:
        text = scrape(base)
    except (urllib.error.URLError, OSError):
        return None
    return metric_total(text, "llmproxy_requests_total", tenant="bench", status="200")


def soak(t: Target, args) -> list:
    samples = []
    stop = threading.Event()
    started = time.monotonic()

    def sample():
        while not stop.wait(5.0):
            samples.append((time.monotonic() - started, procs.rss_mb(t.process.pid)))

    samples.append((0.0, procs.rss_mb(t.process.pid)))
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        result = measure.wrk(t.url, key=t.key, connections=32, seconds=args.soak, cpu=args.client_cpu)
    finally:
        stop.set()
        watcher.join()
    samples.append((time.monotonic() - started, procs.rss_mb(t.process.pid)))
    t.checks["soak_requests"] = result.requests
    t.checks["soak_errors"] = result.errors
    t.warmup_ok += result.ok
    return samples


if __name__ == "__main__":
    main()
