"""The database goes away under a live proxy: requests keep being served and every record arrives later.

A Daphne serves requests while its database cannot be written. On PostgreSQL
it reaches the database through a TCP forwarder that this test stops (every
connection cut, new ones refused) and restarts; on SQLite the test holds the
file's write lock until Daphne's writes time out. Either way the records wait
in the on-disk spool, and once the database is back each request sent has
exactly one RequestLog row.
"""

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from audit.models import RequestLog
from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import make_key, make_route

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello"}]
SQLITE_LOCK_TIMEOUT = 20  # the busy timeout llmproxy/settings.py gives SQLite connections


class TcpForwarder:
    """127.0.0.1:<port> -> target, in a thread; stop() cuts every connection, start() listens again."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.port = servers.free_port()
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.transports = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self):
        self._call(self._start())

    def stop(self):
        self._call(self._stop())

    async def _start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self):
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.transports):
            writer.transport.abort()
        self.transports.clear()

    async def _serve(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.transports |= {writer, up_writer}

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()
                self.transports.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class PostgresOutage:
    def __init__(self):
        db = connection.settings_dict
        self.forwarder = TcpForwarder(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
        self.forwarder.start()
        user = db.get("USER") or "postgres"
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        self.database_url = f"postgres://{user}{password}@127.0.0.1:{self.forwarder.port}/{db['NAME']}"
        self.settle_seconds = 1.0  # a flush every 0.1 s fails at once on a refused connection

    def begin(self):
        self.forwarder.stop()

    def end(self):
        self.forwarder.start()


class SqliteOutage:
    def __init__(self):
        self.database_url = servers.test_database_url()
        self.path = connection.settings_dict["NAME"]
        self.holder = None
        self.settle_seconds = SQLITE_LOCK_TIMEOUT + 3  # Daphne's write waits for the lock, then fails

    def begin(self):
        self.holder = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.holder.execute("BEGIN IMMEDIATE")

    def end(self):
        self.holder.execute("ROLLBACK")
        self.holder.close()


@pytest.fixture
def outage():
    return PostgresOutage() if connection.vendor == "postgresql" else SqliteOutage()


@pytest.fixture
def proxy_with_outage(request, django_db_blocker, mock_upstream, outage, tmp_path):
    spool_env = getattr(request, "param", {})
    with django_db_blocker.unblock():
        process, base = servers.start_daphne(
            ARTIFACTS / "logs",
            name="daphne-db-outage",
            DATABASE_URL=outage.database_url,
            LLMPROXY_VAR_DIR=tmp_path,
            LLMPROXY_CONFIG_TTL_SECONDS=600,
            **spool_env,
        )
    process.base_url = base
    process.spool = tmp_path / "spool"
    yield process
    process.stop()


def send(base, plain, model, *, stream):
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"authorization": f"Bearer {plain}"},
        json={"model": model, "messages": HELLO, "stream": stream},
        timeout=30,
    )
    return response.status_code, response.headers["x-request-id"]


def rows_for(model, expected, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = list(RequestLog.objects.filter(model=model).values_list("request_id", flat=True))
        if len(ids) >= expected:
            time.sleep(0.5)  # and no duplicates arriving late
            return list(RequestLog.objects.filter(model=model).values_list("request_id", flat=True))
        time.sleep(0.1)
    return ids


def test_every_request_served_while_the_database_is_away_is_logged_once_it_returns(
    proxy_with_outage, outage, acme, mock_upstream, unique_model
):
    make_route(acme, unique_model, f"{mock_upstream}/v1")
    _, plain = make_key(acme)
    base = proxy_with_outage.base_url
    sent = [send(base, plain, unique_model, stream=False)]  # caches the key and the route
    assert rows_for(unique_model, 1, timeout=10) == [sent[0][1]]

    outage.begin()
    try:
        with ThreadPoolExecutor(4) as pool:
            sent += pool.map(lambda i: send(base, plain, unique_model, stream=i % 2 == 1), range(40))
        assert {status for status, _ in sent} == {200}  # served from cached keys and routes
        time.sleep(outage.settle_seconds)
        spooled = list(proxy_with_outage.spool.glob("*/*.jsonl"))
        assert spooled, "records should wait on disk while the database is away"
        assert RequestLog.objects.filter(model=unique_model).count() == 1
    finally:
        outage.end()

    ids = rows_for(unique_model, len(sent), timeout=SQLITE_LOCK_TIMEOUT + 15)
    assert sorted(ids) == sorted(request_id for _, request_id in sent)
    assert not list(proxy_with_outage.spool.glob("*/*.jsonl"))
    assert "\nllmproxy_usage_backlog 0.0\n" in httpx.get(f"{base}/metrics").text


REFUSE = {"LLMPROXY_USAGE_SPOOL_FULL_POLICY": "refuse", "LLMPROXY_USAGE_SPOOL_MAX_BYTES": "1"}


@pytest.mark.parametrize("proxy_with_outage", [REFUSE], indirect=True)
def test_a_full_spool_under_the_refuse_policy_answers_503_until_the_database_returns(
    proxy_with_outage, outage, acme, mock_upstream, unique_model
):
    make_route(acme, unique_model, f"{mock_upstream}/v1")
    _, plain = make_key(acme)
    base = proxy_with_outage.base_url
    served = [send(base, plain, unique_model, stream=False)]
    outage.begin()
    try:
        served.append(send(base, plain, unique_model, stream=False))
        time.sleep(outage.settle_seconds)  # its record neither written nor spooled: the proxy stops accepting
        refused = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"authorization": f"Bearer {plain}"},
            json={"model": unique_model, "messages": HELLO},
            timeout=30,
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["message"]
    finally:
        outage.end()

    deadline = time.monotonic() + SQLITE_LOCK_TIMEOUT + 15
    while time.monotonic() < deadline:
        status, request_id = send(base, plain, unique_model, stream=False)
        if status == 200:
            served.append((status, request_id))
            break
        time.sleep(0.2)
    assert [status for status, _ in served] == [200, 200, 200]
    ids = rows_for(unique_model, len(served), timeout=10)
    assert sorted(ids) == sorted(request_id for _, request_id in served)  # refused requests are not logged
