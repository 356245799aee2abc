"""A proxy stopped with SIGTERM still logs every request it took, under Daphne and under uvicorn.

Daphne cancels the requests in flight (499) and exits normally, so its atexit
hook writes what is buffered. uvicorn lets them finish, then dies of the
signal it raises again: no atexit, so the ASGI lifespan's shutdown does it.
"""

import signal
import threading

import httpx
import pytest

from audit.models import RequestLog
from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import make_key, make_route

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STREAMS = 4
# Long enough that every stream is still open when the signal arrives.
SLOW_STREAM = "mock-1?chunks=200&chunk_delay_ms=100"


@pytest.fixture
def daphne(django_db_blocker, mock_upstream, tmp_path):
    with django_db_blocker.unblock():
        process, base = servers.start_daphne(
            ARTIFACTS / "logs", name="daphne-sigterm", LLMPROXY_VAR_DIR=tmp_path
        )
    process.base_url = base
    yield process
    process.stop()


@pytest.fixture(params=["daphne", "uvicorn"])
def server(request, django_db_blocker, mock_upstream, tmp_path):
    start = servers.start_daphne if request.param == "daphne" else servers.start_uvicorn
    with django_db_blocker.unblock():
        process, base = start(
            ARTIFACTS / "logs",
            name=f"{request.param}-sigterm",
            LLMPROXY_VAR_DIR=tmp_path,
            LLMPROXY_USAGE_FLUSH_SECONDS="60",  # nothing written before the signal: the exit writes it all
        )
    process.base_url = base
    yield process
    process.stop()


def stream_request(base, plain, model):
    return {
        "url": f"{base}/v1/chat/completions",
        "headers": {"authorization": f"Bearer {plain}"},
        "json": {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        "timeout": 30,
    }


def open_stream(base, plain, model, started, ids):
    try:
        with httpx.stream("POST", **stream_request(base, plain, model)) as response:
            ids.append(response.headers["x-request-id"])
            chunks = response.iter_bytes()
            next(chunks)
            started.release()
            for _ in chunks:
                pass
    except httpx.HTTPError:
        pass  # the server went away mid-stream: that is the point


def test_streams_cut_by_sigterm_are_each_logged_as_client_closed(daphne, acme, mock_upstream, unique_model):
    make_route(acme, unique_model, f"{mock_upstream}/v1", upstream_model=SLOW_STREAM)
    _, plain = make_key(acme)
    started, ids = threading.Semaphore(0), []
    threads = [
        threading.Thread(target=open_stream, args=(daphne.base_url, plain, unique_model, started, ids))
        for _ in range(STREAMS)
    ]
    for thread in threads:
        thread.start()
    for _ in range(STREAMS):
        assert started.acquire(timeout=15)

    daphne.process.send_signal(signal.SIGTERM)
    daphne.process.wait(20)
    for thread in threads:
        thread.join(10)

    rows = list(RequestLog.objects.filter(model=unique_model))
    assert sorted(r.request_id for r in rows) == sorted(ids)
    assert {r.status for r in rows} == {499}
    assert all(r.stream for r in rows)


def test_a_stream_finished_just_before_sigterm_is_logged_as_served(server, acme, mock_upstream, unique_model):
    make_route(acme, unique_model, f"{mock_upstream}/v1")
    _, plain = make_key(acme)
    response = httpx.post(**stream_request(server.base_url, plain, unique_model))
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(20)
    rows = list(RequestLog.objects.filter(model=unique_model))
    assert [(r.request_id, r.status) for r in rows] == [(response.headers["x-request-id"], 200)]


def test_every_answer_served_before_sigterm_is_logged(server, acme, mock_upstream, unique_model):
    # Sent well within one flush interval of the signal: they are all still buffered when it comes.
    make_route(acme, unique_model, f"{mock_upstream}/v1")
    _, plain = make_key(acme)
    with httpx.Client(timeout=10) as client:
        ids = [
            client.post(
                f"{server.base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {plain}"},
                json={"model": unique_model, "messages": [{"role": "user", "content": f"hi {i}"}]},
            ).headers["x-request-id"]
            for i in range(20)
        ]
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(20)

    rows = RequestLog.objects.filter(model=unique_model)
    assert sorted(rows.values_list("request_id", flat=True)) == sorted(ids)
    assert set(rows.values_list("status", flat=True)) == {200}
    # A clean stop: the upstream connections closed, nothing left for the garbage collector to complain of.
    assert "Unclosed" not in server.log()
    assert "Traceback" not in server.log()
