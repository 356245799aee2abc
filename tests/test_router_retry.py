"""Which upstream failures are tried again on the same route, and how long the router waits first."""

import random

import pytest

from providers.adapters.base import UpstreamError
from providers.retry import backoff_seconds, same_route_again
from providers.router import counts_against_route


@pytest.fixture(autouse=True)
def backoff_settings(settings):
    settings.LLMPROXY_RETRY_BACKOFF_BASE_SECONDS = 0.2
    settings.LLMPROXY_RETRY_BACKOFF_MAX_SECONDS = 2.0
    settings.LLMPROXY_RETRY_AFTER_MAX_SECONDS = 10.0


def error(status, *, retryable=True, kind="upstream_error", retry_after=None, mid_stream=False):
    return UpstreamError(
        status,
        f"upstream returned {status}",
        retryable=retryable,
        kind=kind,
        retry_after=retry_after,
        mid_stream=mid_stream,
    )


@pytest.mark.parametrize("status", [0, 408, 429, 500, 502, 503, 504, 529])
def test_upstream_trouble_is_tried_again_on_the_same_route(status):
    assert same_route_again(error(status))


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_tried_again(status):
    assert not same_route_again(error(status, retryable=False))
    assert not counts_against_route(error(status, retryable=False))


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_credential_moves_to_the_next_route_without_a_retry(status):
    assert not same_route_again(error(status))
    assert counts_against_route(error(status))


def test_a_route_that_cannot_serve_the_endpoint_is_neither_retried_nor_held_against_it():
    unsupported = error(502, kind="unsupported")
    assert not same_route_again(unsupported)
    assert not counts_against_route(unsupported)


def test_a_stream_broken_after_its_first_chunk_counts_against_the_route():
    assert counts_against_route(error(502, retryable=False, mid_stream=True))


def test_the_backoff_grows_exponentially_with_jitter_up_to_its_cap():
    rng = random.Random(5)
    for tries_done, step in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 2.0), (9, 2.0)]:
        waits = [backoff_seconds(tries_done, rng=rng) for _ in range(200)]
        assert all(step / 2 <= w <= step for w in waits), (tries_done, min(waits), max(waits))
        assert max(waits) - min(waits) > step / 4  # jittered, not a fixed wait


def test_a_retry_after_is_waited_for_at_least():
    assert backoff_seconds(1, retry_after=3.0) == 3.0
    assert 0.1 <= backoff_seconds(1, retry_after=0.0) <= 0.2


def test_a_retry_after_beyond_the_cap_means_not_this_route_again(settings):
    assert backoff_seconds(1, retry_after=10.0) == 10.0
    assert backoff_seconds(1, retry_after=10.5) is None
    settings.LLMPROXY_RETRY_AFTER_MAX_SECONDS = 30.0
    assert backoff_seconds(1, retry_after=10.5) == 10.5
