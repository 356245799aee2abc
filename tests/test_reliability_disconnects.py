"""Clients that go away at every stage of a request: nothing leaks, nothing is lost, the proxy keeps serving.

The stages: before the whole body has arrived, while the proxy waits for the
upstream, in the middle of a stream, and just after its last chunk. For each,
a request that reached the gateway has exactly one row (499 when the client
left before the answer ended), the upstream request is cancelled when its
answer was still coming, the quota charges what was used and holds nothing
more, and the proxy's log has no traceback.

Quota holds are read the way a client sees them: a probe request before and
after reports ``x-ratelimit-remaining-tokens``; between the two, exactly the
usage of the rows written must have gone. A hold left behind by a request
(its input plus 4096 output tokens) would show in the difference. This works
on both limiters (in-process and Redis).
"""

import socket
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from audit.models import RequestLog
from quotas.models import QuotaLimit
from tests.gateway_helpers import make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello"}]
LATENCY_MS = 3000  # the upstream's wait before it answers, where the client leaves


@pytest.fixture
def proxy(proxy_without_tracebacks):
    return proxy_without_tracebacks


class Quota:
    """A key with a month's requests and tokens limits, and a probe model to read what they hold."""

    def __init__(self, proxy, acme, upstream, model):
        self.proxy = proxy
        self.probe_model = f"{model}-probe"
        make_route(acme, self.probe_model, upstream.v1, name=self.probe_model)
        api_key, self.key = make_key(acme)
        for metric, limit in (("requests", 1000), ("tokens", 1_000_000)):
            QuotaLimit.objects.create(
                tenant=acme, scope="key", api_key=api_key, metric=metric, period="month", limit=limit
            )
        self.probes = 0
        self.before = self.probe()

    def probe(self) -> tuple[int, int]:
        """(requests, tokens) left after a small request (its own hold included, the same every time)."""
        answer = post(self.proxy, self.key, self.probe_model, max_tokens=50)
        assert answer.status_code == 200
        self.probes += 1
        wait_for_logs(self.probes, model=self.probe_model)  # written, so settled
        headers = answer.headers
        return int(headers["x-ratelimit-remaining-requests"]), int(headers["x-ratelimit-remaining-tokens"])

    def assert_charged_only(self, rows):
        """Since the first probe: one request and the real tokens per row, and no hold left anywhere."""
        requests_left, tokens_left = self.probe()
        first_probe = RequestLog.objects.filter(model=self.probe_model).order_by("created_at")[0]
        used = sum(row.input_tokens + row.output_tokens for row in [first_probe, *rows])
        assert (self.before[0] - requests_left, self.before[1] - tokens_left) == (1 + len(rows), used)


def post(proxy, key, model, *, stream=False, timeout=30, **extra):
    return httpx.post(
        f"{proxy.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": HELLO, "stream": stream, **extra},
        timeout=timeout,
    )


def upstream_request(upstream, model, timeout=5.0, said=None):
    """The upstream's last request for MODEL (that said SAID), once it has ended (or after TIMEOUT)."""
    deadline = time.monotonic() + timeout
    while True:
        mine = [
            r
            for r in upstream.requests()
            if r["body"]["model"] == model and said in (None, r["body"]["messages"][-1]["content"])
        ]
        if mine and mine[-1]["outcome"] != "pending" or time.monotonic() > deadline:
            return mine[-1] if mine else None
        time.sleep(0.05)


def raw_request(proxy, key, payload: dict, request_id: str, *, body_bytes=None, chunked=False) -> bytes:
    """An HTTP/1.1 POST to /v1/chat/completions; with BODY_BYTES, only that much of its body."""
    body = orjson.dumps(payload)
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nx-request-id: %s\r\n%s\r\n\r\n"
        % (proxy.base_url.removeprefix("http://").encode(), key.encode(), request_id.encode(), framing)
    )
    if body_bytes is not None:
        body = body[:body_bytes]
    return head + (b"%x\r\n%s\r\n" % (len(body), body) if chunked else body)


def connect(proxy):
    host, port = proxy.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


# --- before the whole body ---------------------------------------------------------------------------


def send_part_of_a_body(proxy, key, model, request_id, *, chunked):
    payload = {"model": model, "messages": HELLO}
    # Content-Length: the first 40 bytes of it. Chunked: one chunk of it, and never the last (empty) one.
    request = raw_request(proxy, key, payload, request_id, body_bytes=40, chunked=chunked)
    with connect(proxy) as sock:
        sock.sendall(request)
        time.sleep(0.3)  # (so that the server has read it before the connection closes)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_that_leaves_before_its_body_is_whole_leaves_no_trace(
    proxy, acme, upstream, unique_model, chunked
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?chunks=2")
    quota = Quota(proxy, acme, upstream, unique_model)
    request_id = f"req-partial-{uuid.uuid4().hex}"

    send_part_of_a_body(proxy, quota.key, unique_model, request_id, chunked=chunked)

    quota.assert_charged_only([])  # its probe's row is written after anything the partial request did
    assert not RequestLog.objects.filter(request_id=request_id).exists()
    assert upstream_request(upstream, "mock-1?chunks=2", timeout=0) is None


# --- while the proxy waits for the upstream -------------------------------------------------------------


def leave_while_the_upstream_thinks(proxy, key, model, upstream, *, stream):
    """Send a request and close the connection once the upstream has it: (request id, what it said)."""
    said = f"Hello {uuid.uuid4().hex}"
    request_id = f"req-leaving-{uuid.uuid4().hex}"
    payload = {"model": model, "messages": [{"role": "user", "content": said}], "stream": stream}
    with connect(proxy) as sock:
        sock.sendall(raw_request(proxy, key, payload, request_id))
        deadline = time.monotonic() + 10
        while not any(r["body"]["messages"][-1]["content"] == said for r in upstream.requests()):
            assert time.monotonic() < deadline, "the request did not reach the upstream"
            time.sleep(0.02)
    return request_id, said


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_client_that_leaves_while_the_upstream_thinks_cancels_it_and_is_logged_499(
    proxy, acme, upstream, unique_model, stream
):
    make_route(acme, unique_model, upstream.v1, upstream_model=f"mock-1?latency_ms={LATENCY_MS}")
    quota = Quota(proxy, acme, upstream, unique_model)

    request_id, said = leave_while_the_upstream_thinks(
        proxy, quota.key, unique_model, upstream, stream=stream
    )

    ended = upstream_request(upstream, f"mock-1?latency_ms={LATENCY_MS}", said=said)
    assert ended["outcome"] == "cancelled"  # not "answered" once its latency is over
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.request_id, row.status, row.error_type) == (request_id, 499, "client_disconnected")
    assert row.stream is stream
    assert (row.input_tokens, row.output_tokens) == (0, 0)  # no answer: nothing to charge but the request
    quota.assert_charged_only([row])


# --- in the middle of a stream ----------------------------------------------------------------------


def read_some_of_a_stream(proxy, key, model, events):
    with httpx.stream(
        "POST",
        f"{proxy.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": HELLO, "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        seen = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(line)
                if len(seen) == events:
                    return seen, response.headers["x-request-id"]
    raise AssertionError(f"the stream ended after {len(seen)} events")


def test_a_client_that_leaves_mid_stream_cancels_the_upstream_and_its_partial_usage_is_charged(
    proxy, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?chunks=20&chunk_delay_ms=100")
    quota = Quota(proxy, acme, upstream, unique_model)

    seen, request_id = read_some_of_a_stream(proxy, quota.key, unique_model, events=4)

    assert all(line.startswith("data: {") for line in seen)
    ended = upstream_request(upstream, "mock-1?chunks=20&chunk_delay_ms=100")
    assert ended["outcome"] == "cancelled"
    [stream] = upstream.streams()
    assert stream["outcome"] == "client_disconnected" and stream["sent"] < 20
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.request_id, row.status, row.error_type) == (request_id, 499, "client_disconnected")
    assert row.output_tokens > 0 and row.tokens_estimated  # what reached the client, counted locally
    quota.assert_charged_only([row])


# --- just after the last chunk --------------------------------------------------------------------------


def test_a_client_that_leaves_right_after_the_last_chunk_has_its_answer_logged_as_served(
    proxy, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?chunks=5")
    quota = Quota(proxy, acme, upstream, unique_model)

    seen, request_id = read_some_of_a_stream(proxy, quota.key, unique_model, events=8)  # 7 chunks, [DONE]

    assert seen[-1] == "data: [DONE]"
    assert upstream_request(upstream, "mock-1?chunks=5")["outcome"] == "answered"
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.request_id, row.status, row.error_type) == (request_id, 200, "")
    assert not row.tokens_estimated  # the upstream's own usage block arrived
    quota.assert_charged_only([row])


# --- all of them at once --------------------------------------------------------------------------------


def test_clients_leaving_at_every_stage_at_once_each_leave_one_row_and_no_hold(
    proxy, acme, upstream, unique_model
):
    slow, streaming, quick = (f"{unique_model}-{name}" for name in ("slow", "streaming", "quick"))
    make_route(acme, slow, upstream.v1, upstream_model=f"mock-1?latency_ms={LATENCY_MS}", name=slow)
    make_route(
        acme, streaming, upstream.v1, upstream_model="mock-1?chunks=20&chunk_delay_ms=100", name=streaming
    )
    make_route(acme, quick, upstream.v1, upstream_model="mock-1?chunks=5", name=quick)
    quota = Quota(proxy, acme, upstream, unique_model)
    rounds = 3
    partial_ids = [f"req-partial-{uuid.uuid4().hex}" for _ in range(rounds)]

    def leave_while_waiting(stream):
        leave_while_the_upstream_thinks(proxy, quota.key, slow, upstream, stream=stream)

    jobs = []
    for i in range(rounds):
        jobs += [
            lambda i=i: send_part_of_a_body(proxy, quota.key, quick, partial_ids[i], chunked=i % 2 == 1),
            lambda: leave_while_waiting(False),
            lambda: leave_while_waiting(True),
            lambda: read_some_of_a_stream(proxy, quota.key, streaming, events=4),
            lambda: read_some_of_a_stream(proxy, quota.key, quick, events=8),
            lambda: post(proxy, quota.key, quick).raise_for_status(),
        ]
    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(job) for job in jobs]:
            done.result()

    rows = {
        model: wait_for_logs(count, model=model)
        for model, count in ((slow, 2 * rounds), (streaming, rounds), (quick, 2 * rounds))
    }
    assert {(r.status, r.error_type) for r in rows[slow] + rows[streaming]} == {(499, "client_disconnected")}
    assert {(r.status, r.error_type) for r in rows[quick]} == {(200, "")}
    quota.assert_charged_only([row for found in rows.values() for row in found])
    assert not RequestLog.objects.filter(request_id__in=partial_ids).exists()
    assert RequestLog.objects.filter(model__startswith=unique_model).count() == 5 * rounds + 2  # and probes
    deadline = time.monotonic() + 5
    while True:
        outcomes = Counter(r["outcome"] for r in upstream.requests() if r["body"]["model"] != "mock-1")
        if "pending" not in outcomes or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert outcomes == {"cancelled": 3 * rounds, "answered": 2 * rounds}
