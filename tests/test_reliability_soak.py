"""A 20-second soak (bench/soak.py): two proxies, a mixed load, nothing lost, only the upstream's 5xx."""

import pytest

from bench import soak
from tests import servers
from tests.conftest import ARTIFACTS
from tests.limiter_support import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DURATION = 20


@pytest.fixture
def redis_server():
    server = RedisServer()  # a private one, so the two processes share quotas in every test run
    yield server
    server.stop()


def test_two_proxies_under_a_mixed_load_log_every_request_and_fail_only_where_the_upstream_did(
    django_db_blocker, redis_server, tmp_path
):
    with django_db_blocker.unblock():
        env = servers.proxy_env(REDIS_URL=redis_server.url, LLMPROXY_VAR_DIR=tmp_path, LOG_LEVEL="WARNING")
        report = soak.run(env, ARTIFACTS / "logs", duration=DURATION, concurrency=6)
    assert report["requests"] > 100, report
    assert report["unexpected"] == {}, report
    assert report["rows"] == report["requests"], report
    statuses = report["by_status"]
    # The mix did what it says: quota refusals, and the failing route's 502s (503 once its breaker opens).
    assert statuses.get("429", 0) > 0 and statuses.get("502", 0) > 0, report
    assert set(statuses) <= {"200", "429", "502", "503"}, report
    assert statuses.get("503", 0) <= report["by_kind"]["failing"], report
    for start, end in zip(report["rss_start_mb"], report["rss_end_mb"], strict=True):
        assert end < start + 100, report
