"""A client that reads a large stream slowly: the proxy holds a bounded part of it, never the whole answer.

The upstream streams about 50 MB as fast as it can; the client reads it at a
fraction of that speed. A proxy that does not wait for the client's socket
buffers whatever the upstream sends, so its memory grows by the size of the
answer. The proxy's resident memory is sampled while the client reads, under
Daphne (whose ASGI ``send`` does not wait: the gateway waits for Twisted's
transport itself) and under uvicorn (whose ``send`` waits while its buffer is
full), and the client must still get every byte.
"""

import threading
import time

import httpx
import orjson
import pytest

from audit.models import RequestLog
from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import make_key, make_route

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHUNKS = 800
PAD = 64 * 1024  # bytes of filler in every chunk: about 52 MB in all, with 800 characters of text
TEXT = 800
# What the proxy may hold for one slow client on top of its resident memory before the answer: a few
# chunks in flight on each side. Buffering the whole answer would take more than 50 MB.
BOUND_MB = 16


@pytest.fixture(params=["daphne", "uvicorn"])
def proxy(request, django_db_blocker, mock_upstream, tmp_path):
    with django_db_blocker.unblock():
        if request.param == "daphne":
            process, base = servers.start_daphne(
                ARTIFACTS / "logs", name="daphne-slow-reader", LLMPROXY_VAR_DIR=tmp_path
            )
        else:
            process, base = servers.start_uvicorn(
                ARTIFACTS / "logs", name="uvicorn-slow-reader", LLMPROXY_VAR_DIR=tmp_path
            )
    process.base_url = base
    yield process
    process.stop()


def rss_mb(pid) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.join()
        return self.peak


def test_a_slow_reader_gets_every_byte_of_a_large_stream_while_the_proxy_holds_a_bounded_part(
    proxy, acme, mock_upstream, unique_model
):
    make_route(
        acme,
        unique_model,
        f"{mock_upstream}/v1",
        upstream_model=f"mock-1?chunks={CHUNKS}&reply_chars={TEXT}&pad_bytes={PAD}",
    )
    make_route(acme, f"{unique_model}-small", f"{mock_upstream}/v1", name=f"up-{unique_model}-small")
    _, plain = make_key(acme)
    request = {
        "url": f"{proxy.base_url}/v1/chat/completions",
        "headers": {"authorization": f"Bearer {plain}"},
        "json": {"model": unique_model, "stream": True, "messages": [{"role": "user", "content": "Hello"}]},
        "timeout": 30,
    }
    http = httpx.Client()
    # Warm up (key, route, pools) with a small stream on the connection the large one then uses: a
    # stream must leave the connection ready for the next request.
    small = {**request, "json": {**request["json"], "model": f"{unique_model}-small"}}
    assert http.post(**small).text.endswith("data: [DONE]\n\n")
    pid = proxy.process.pid
    before = rss_mb(pid)
    sampler = RssSampler(pid)
    sampler.start()
    events, received = [], 0
    try:
        with http.stream("POST", **request) as response:
            assert response.status_code == 200
            # At most 64 KiB per read and a pause after each line: about 10 MB/s, a fraction of what the
            # upstream and the proxy can do, so everything the client has not read yet waits somewhere.
            for line in response.iter_lines():
                received += len(line) + 1
                if line.startswith("data: "):
                    events.append(line[6:])
                time.sleep(0.004)
    finally:
        peak = sampler.stop()
        http.close()

    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert len(chunks) == CHUNKS + 2  # the role, every piece of text, the finish reason
    assert all(len(chunk["x_mock_padding"]) == PAD for chunk in chunks)
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert len(text) == TEXT and text.startswith("Mock answer to: Hello")
    assert received > CHUNKS * PAD
    assert peak - before < BOUND_MB, f"the proxy grew from {before:.0f} to {peak:.0f} MB"

    deadline = time.monotonic() + 10
    while RequestLog.objects.filter(model__startswith=unique_model).count() < 2:
        assert time.monotonic() < deadline, "no request log row"
        time.sleep(0.05)
    rows = RequestLog.objects.filter(model__startswith=unique_model).order_by("created_at")
    assert [(row.model, row.status, row.error_type) for row in rows] == [
        (f"{unique_model}-small", 200, ""),
        (unique_model, 200, ""),
    ]
