"""Failed key authentications: audited in aggregate, throttled per address; stored prompts are redacted."""

import time

import httpx
import pytest

from audit.models import AuditLog
from tests.gateway_helpers import client, make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_failed_authentications_become_one_aggregated_audit_row(proxy_server, acme, upstream, unique_model):
    api_key, plain = make_key(acme)
    wrong = plain[:-3] + ("xyz" if not plain.endswith("xyz") else "abc")
    for _ in range(5):
        response = httpx.post(
            f"{proxy_server.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {wrong}"},
            json={"model": unique_model},
        )
        assert response.status_code == 401
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline:
        rows = list(AuditLog.objects.filter(action="security.auth_failed", tenant=acme))
        if sum(r.metadata["count"] for r in rows) >= 5:
            break
        time.sleep(0.1)
    # One row per address and minute in each batch the proxy writes: not one per failure.
    assert 1 <= len(rows) <= 2
    assert sum(r.metadata["count"] for r in rows) == 5
    assert sum(r.metadata["reasons"]["wrong_secret"] for r in rows) == 5
    assert api_key.prefix in rows[0].metadata["key_prefixes"]
    assert all(wrong not in str(r.metadata) for r in rows)


def test_an_address_that_keeps_failing_is_throttled(
    django_db_setup, django_db_blocker, acme, upstream, unique_model
):
    from tests import servers
    from tests.conftest import ARTIFACTS

    with django_db_blocker.unblock():
        process, base = servers.start_daphne(
            ARTIFACTS / "logs", name="throttle-daphne", LLMPROXY_AUTH_FAILURES_PER_MINUTE=3
        )
    try:
        statuses = [
            httpx.post(
                f"{base}/v1/chat/completions", headers={"authorization": "Bearer nope"}, json={}
            ).status_code
            for _ in range(5)
        ]
        assert statuses[:3] == [401, 401, 401]
        assert statuses[3] == 429 or time.time() % 60 < 2  # unless the minute rolled over meanwhile
        throttled = httpx.post(
            f"{base}/v1/chat/completions", headers={"authorization": "Bearer nope"}, json={}
        )
        if throttled.status_code == 429:
            assert throttled.json()["error"]["code"] == "auth_throttled"
            assert 1 <= int(throttled.headers["retry-after"]) <= 60
    finally:
        process.stop()


def test_prompts_are_stored_only_when_the_tenant_opts_in_and_then_redacted(
    proxy_server, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1)
    api = client(proxy_server, make_key(acme)[1])
    secret_prompt = [{"role": "user", "content": "mail me at jane.doe@example.com"}]
    api.chat.completions.create(model=unique_model, messages=secret_prompt)
    [row] = wait_for_logs(1, model=unique_model)
    assert row.prompt == "" and row.completion == ""
    acme.store_prompts = True
    acme.save()
    time.sleep(1.2)  # the proxy re-reads the tenant within its config TTL
    api.chat.completions.create(model=unique_model, messages=secret_prompt, max_tokens=9)
    rows = wait_for_logs(2, model=unique_model)
    assert "jane.doe@example.com" not in rows[1].prompt + rows[1].completion
    assert "[REDACTED:EMAIL]" in rows[1].prompt
    assert "Mock answer to" in rows[1].completion
