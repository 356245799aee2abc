"""The built-in `mock` provider: answers in-process, no network (used by `make run` and the tests)."""

import asyncio

from providers import mock_engine
from providers.adapters.base import RETRYABLE_STATUSES, Adapter, UpstreamError


class MockAdapter(Adapter):
    def _options(self, target):
        return mock_engine.split_model(target.upstream_model, target.provider.options)

    @staticmethod
    def _maybe_fail(options):
        status = options.get("fail_status")
        if status:
            raise UpstreamError(
                status,
                f"upstream returned {status}: mock failure",
                retryable=status in RETRYABLE_STATUSES or status >= 500,
            )

    async def complete(self, target, endpoint, body):
        model, options = self._options(target)
        if options.get("latency_ms"):
            await asyncio.sleep(options["latency_ms"] / 1000)
        self._maybe_fail(options)
        return mock_engine.answer(endpoint, model, body, options)

    async def stream(self, target, endpoint, body):
        model, options = self._options(target)
        if options.get("latency_ms"):
            await asyncio.sleep(options["latency_ms"] / 1000)
        self._maybe_fail(options)
        delay = options.get("chunk_delay_ms", 0) / 1000
        fail_after = options.get("fail_after_chunks")
        for i, chunk in enumerate(mock_engine.stream_chunks(endpoint, model, body, options)):
            if fail_after is not None and i >= fail_after:
                raise UpstreamError(
                    502, "upstream stream broke: mock failure", retryable=False, mid_stream=True
                )
            if i and delay:
                await asyncio.sleep(delay)
            yield chunk
