"""An upstream that breaks in the middle of its answer: the client gets a clean error, the request its row.

Faults of the local upstream (providers/mock_server.py) on a model with a
single route, so each reaches the client: a connection reset part-way through
the answer, an upstream that sends nothing (before its answer or in the middle
of a stream), and one that drips its bytes. A plain answer ends in OpenAI's
error object (502, or 504 for a timeout); a stream that already started ends
with an error event and no ``[DONE]``. Each request has its row, the upstream
connection is closed when the proxy gives up on it, the proxy keeps serving,
and its log has no traceback.
"""

import time

import httpx
import orjson
import pytest

from tests.gateway_helpers import make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello"}]
TIMEOUT = 1.0  # the provider's timeout in these tests


@pytest.fixture
def key(acme):
    return make_key(acme)[1]


@pytest.fixture
def proxy(proxy_without_tracebacks):
    return proxy_without_tracebacks


def route(acme, upstream, model, fault):
    make_route(acme, model, upstream.v1, upstream_model=f"mock-1?{fault}", timeout=TIMEOUT)
    make_route(acme, f"{model}-ok", upstream.v1, name=f"{model}-ok")


def post(proxy, key, model, *, stream=False, timeout=30):
    return httpx.post(
        f"{proxy.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": HELLO, "stream": stream},
        timeout=timeout,
    )


def events(response) -> list:
    """The data of each server-sent event, decoded (``[DONE]`` as is)."""
    found = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            found.append(data if data == "[DONE]" else orjson.loads(data))
    return found


def upstream_outcome(upstream, model="mock-1", timeout=5.0):
    """How the upstream's last request for MODEL ended, once it has."""
    deadline = time.monotonic() + timeout
    while True:
        mine = [r for r in upstream.requests() if r["body"]["model"].startswith(model)]
        if mine and mine[-1]["outcome"] != "pending" or time.monotonic() > deadline:
            return mine[-1]["outcome"] if mine else None
        time.sleep(0.05)


def still_serves(proxy, key, model):
    answer = post(proxy, key, f"{model}-ok")
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "Mock answer to: Hello"


def assert_openai_error(response, status, code):
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    assert response.headers["x-request-id"]


# --- a connection reset part-way through -----------------------------------------------------------


def test_a_plain_answer_cut_by_a_connection_reset_is_a_502(proxy, acme, upstream, unique_model, key):
    route(acme, upstream, unique_model, "reset_after_bytes=40")

    response = post(proxy, key, unique_model)

    assert_openai_error(response, 502, "connection_error")
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type, row.stream) == (502, "connection_error", False)
    assert row.request_id == response.headers["x-request-id"]
    assert upstream_outcome(upstream) == "broken"
    still_serves(proxy, key, unique_model)


def test_a_stream_cut_by_a_connection_reset_ends_with_an_error_event(
    proxy, acme, upstream, unique_model, key
):
    route(acme, upstream, unique_model, "chunks=6&reset_after_chunks=3")

    response = post(proxy, key, unique_model, stream=True)

    assert response.status_code == 200
    received = events(response)
    assert len(received) == 4 and "[DONE]" not in received
    assert all("choices" in chunk for chunk in received[:3])
    assert received[3]["error"]["code"] == "upstream_stream_error"
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type, row.stream) == (200, "upstream_stream_error", True)
    assert row.output_tokens > 0  # the part that reached the client is counted
    still_serves(proxy, key, unique_model)


# --- an upstream that sends nothing ----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_upstream_that_never_answers_is_a_504_after_the_timeout(
    proxy, acme, upstream, unique_model, key, stream
):
    route(acme, upstream, unique_model, "hang=1")

    response = post(proxy, key, unique_model, stream=stream)

    assert_openai_error(response, 504, "timeout")
    assert f"timed out after {TIMEOUT:g}s" in response.json()["error"]["message"]
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type, row.stream) == (504, "timeout", stream)
    assert upstream_outcome(upstream) == "cancelled"  # the proxy closed the connection it gave up on
    still_serves(proxy, key, unique_model)


def test_a_stream_that_falls_silent_ends_with_a_timeout_event_and_the_upstream_is_closed(
    proxy, acme, upstream, unique_model, key
):
    route(acme, upstream, unique_model, "chunks=6&stall_after_chunks=2")

    # Without a bound on the silence, the client would wait for its own timeout.
    response = post(proxy, key, unique_model, stream=True, timeout=10 * TIMEOUT)

    assert response.status_code == 200
    received = events(response)
    assert len(received) == 3 and "[DONE]" not in received
    error = received[2]["error"]
    assert (error["code"], error["type"]) == ("upstream_stream_timeout", "timeout_error")
    assert f"{TIMEOUT:g}s" in error["message"]
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type) == (200, "upstream_stream_timeout")
    assert upstream_outcome(upstream) == "cancelled"
    [record] = upstream.streams()
    assert (record["sent"], record["outcome"]) == (2, "client_disconnected")
    still_serves(proxy, key, unique_model)


# --- an upstream that drips its answer ---------------------------------------------------------------


def test_a_plain_answer_dripping_past_the_timeout_is_a_504(proxy, acme, upstream, unique_model, key):
    # About 400 bytes, 8 every 100 ms: five seconds, past the one-second timeout.
    route(acme, upstream, unique_model, "drip_ms=100&drip_bytes=8")

    response = post(proxy, key, unique_model)

    assert_openai_error(response, 504, "timeout")
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type) == (504, "timeout")
    assert upstream_outcome(upstream) == "cancelled"
    still_serves(proxy, key, unique_model)


def test_a_stream_that_drips_without_a_long_silence_is_relayed_whole(
    proxy, acme, upstream, unique_model, key
):
    # Every gap is 40 ms; the whole stream takes longer than the provider's timeout, which bounds
    # only its first chunk and each silence.
    route(acme, upstream, unique_model, "chunks=10&drip_ms=40&drip_bytes=48")

    started = time.monotonic()
    response = post(proxy, key, unique_model, stream=True)

    assert time.monotonic() - started > TIMEOUT
    assert response.status_code == 200
    received = events(response)
    assert received[-1] == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in received[:-1]) == (
        "Mock answer to: Hello"
    )
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type) == (200, "")
    assert upstream_outcome(upstream) == "answered"


def test_a_client_that_gives_up_on_a_dripping_stream_closes_the_upstream_too(
    proxy, acme, upstream, unique_model, key
):
    route(acme, upstream, unique_model, "chunks=20&drip_ms=100&drip_bytes=64")

    received = []
    with httpx.stream(
        "POST",
        f"{proxy.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": unique_model, "messages": HELLO, "stream": True},
        timeout=30,
    ) as response:
        deadline = time.monotonic() + 1.0  # all the client is willing to wait
        for line in response.iter_lines():
            received.append(line)
            if time.monotonic() > deadline:
                break

    assert any(line.startswith("data: {") for line in received)
    assert upstream_outcome(upstream) == "cancelled"
    [record] = upstream.streams()
    assert record["outcome"] == "client_disconnected" and record["sent"] < 20
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type, row.stream) == (499, "client_disconnected", True)
    still_serves(proxy, key, unique_model)
