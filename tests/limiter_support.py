"""Fixtures for the limiter tests: a private redis-server per module, and both backends side by side.

The Redis tests start their own server (whatever REDIS_URL says) so that they
run in every test run and can stop and restart it; flushing it is harmless.
"""

import itertools
import random
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from quotas import limiter
from quotas.limiter import Ask, Limit, current_usage
from tests.servers import free_port

REDIS_SERVER = "/usr/bin/redis-server"

# A fixed clock: 2030-01-15 12:00:30 UTC, 30 seconds into a minute.
T0 = datetime(2030, 1, 15, 12, 0, 30, tzinfo=UTC).timestamp()


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)

    def client(self):
        return redis.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def on_redis(redis_server, settings, monkeypatch):
    """The limiter on this module's private Redis, emptied, with no failure remembered from another test."""
    redis_server.client().flushdb()
    settings.REDIS_URL = redis_server.url
    monkeypatch.setattr(limiter, "_redis_retry_at", 0.0)
    return redis_server


@pytest.fixture
def in_process(settings):
    settings.REDIS_URL = ""


@pytest.fixture(params=["in_process", "on_redis"])
def backend(request):
    """Run a test once with the in-process limiter and once on Redis: both must behave alike."""
    request.getfixturevalue(request.param)
    return request.param


# Fresh limit ids for every test: the in-process limiter's memory lasts as long as pytest does.
_ids = itertools.count(random.randrange(10**6, 10**9, 10**4))


@pytest.fixture
def make_limit():
    def make(metric, period, limit, scope="tenant", tenant_id=7):
        return Limit(next(_ids), tenant_id, scope, metric, period, Decimal(limit))

    return make


def ask(input_tokens=10, max_output_tokens=100, input_price="0", output_price="0"):
    return Ask(input_tokens, max_output_tokens, Decimal(input_price), Decimal(output_price))


def usage(limit, now=T0):
    """(used, reserved) of LIMIT's window at NOW."""
    found = current_usage(limit, now=now)
    return found["used"], found["reserved"]
