"""Real server processes for the end-to-end tests: Daphne running the proxy, and the mock upstream."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database pytest-django created, for the server processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


class ServerProcess:
    def __init__(self, name, command, env, health_url, log_dir):
        self.name = name
        self.health_url = health_url
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            try:
                if httpx.get(self.health_url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def proxy_env(**overrides) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "DJANGO_SETTINGS")) and k not in ("DATABASE_URL",)
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "llmproxy.settings",
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "LLMPROXY_REDIS_KEY_PREFIX": settings.LLMPROXY_REDIS_KEY_PREFIX,
            "SECRET_KEY": settings.SECRET_KEY,
            "LLMPROXY_ENCRYPTION_KEY": ",".join(settings.LLMPROXY_ENCRYPTION_KEYS),
            "LLMPROXY_USAGE_FLUSH_SECONDS": "0.1",
            "LLMPROXY_CONFIG_TTL_SECONDS": "1",
            "LLMPROXY_AUTH_AUDIT_WINDOW_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
            # Read by providers configured with --api-key-env in the tests.
            "LLMPROXY_TEST_UPSTREAM_KEY": "upstream-secret-from-env",
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def start_daphne(log_dir, name="daphne", **env_overrides) -> tuple[ServerProcess, str]:
    port = free_port()
    command = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "llmproxy.asgi:application"]
    base = f"http://127.0.0.1:{port}"
    return ServerProcess(name, command, proxy_env(**env_overrides), f"{base}/healthz", log_dir), base


def start_uvicorn(log_dir, name="uvicorn", **env_overrides) -> tuple[ServerProcess, str]:
    """The same ASGI application under uvicorn (README: the production choice)."""
    port = free_port()
    command = [
        str(VENV_BIN / "uvicorn"),
        "llmproxy.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    base = f"http://127.0.0.1:{port}"
    return ServerProcess(name, command, proxy_env(**env_overrides), f"{base}/healthz", log_dir), base


def start_mock_upstream(log_dir, name="mock-upstream") -> tuple[ServerProcess, str]:
    port = free_port()
    command = [sys.executable, "-m", "providers.mock_server", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return ServerProcess(name, command, env, f"{base}/v1/models", log_dir), base
