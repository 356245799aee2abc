"""Key rotation through the grace boundary, seen by two proxy processes at once.

Each process caches keys for a few seconds, so the promise under test is the
operator's: the new secret works everywhere on its first request, the old one
keeps working until the grace period ends, then is refused by every process
within 5 seconds — and a second rotation during the grace period ends the
oldest secret everywhere within 5 seconds too.
"""

import time
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.core.management import call_command

from keys.models import ApiKey
from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROPAGATION = 5.0  # the README's promise for operator changes


@pytest.fixture(scope="module")
def second_proxy(proxy_server, django_db_blocker):
    with django_db_blocker.unblock():
        process, base = servers.start_daphne(ARTIFACTS / "logs", name="daphne-rotation")
    process.base_url = base
    yield process
    process.stop()


@pytest.fixture
def proxies(proxy_server, second_proxy):
    return [proxy_server.base_url, second_proxy.base_url]


@pytest.fixture
def model(acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1)
    return unique_model


def status(base, key, model):
    return httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    ).status_code


def rotate(prefix, grace):
    out = StringIO()
    call_command("rotate_api_key", prefix, "--grace", grace, stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()[-1]


def refused_by_all(proxies, key, model, deadline):
    """Poll every process until each refuses ``key``; the monotonic time when the last one did."""
    waiting = list(proxies)
    while waiting and time.monotonic() < deadline:
        waiting = [base for base in waiting if status(base, key, model) != 401]
        if waiting:
            time.sleep(0.1)
    assert not waiting, f"{key[:11]} still accepted by {waiting}"
    return time.monotonic()


def test_the_old_secret_works_on_both_processes_until_the_grace_ends_then_nowhere(acme, model, proxies):
    api_key, old = make_key(acme, name="rotating")
    sent = 0
    for base in proxies:  # both processes have the key cached
        assert status(base, old, model) == 200
        sent += 1

    new = rotate(api_key.prefix, "4s")
    grace_ends = ApiKey.objects.get(pk=api_key.pk).previous_valid_until
    ends_in = (grace_ends - ApiKey.objects.get(pk=api_key.pk).rotated_at).total_seconds()
    grace_end_monotonic = time.monotonic() + ends_in

    for base in proxies:
        assert status(base, new, model) == 200, "the new secret must work on its first request"
        assert status(base, old, model) == 200, "the old secret works during the grace period"
        sent += 2
    assert time.monotonic() < grace_end_monotonic - 0.5, "the machine was too slow to check inside the grace"

    while time.monotonic() < grace_end_monotonic:
        time.sleep(0.05)
    refused_at = refused_by_all(proxies, old, model, deadline=grace_end_monotonic + PROPAGATION + 2)
    assert refused_at - grace_end_monotonic <= PROPAGATION
    for base in proxies:
        assert status(base, old, model) == 401, "once refused, the old secret stays refused"
        assert status(base, new, model) == 200
        sent += 1
    assert len(wait_for_logs(sent, model=model, status=200)) == sent


def test_rotating_again_during_the_grace_ends_the_oldest_secret_everywhere(acme, model, proxies):
    api_key, first = make_key(acme, name="twice")
    for base in proxies:
        assert status(base, first, model) == 200

    second = rotate(api_key.prefix, "1h")
    for base in proxies:  # both processes now cache (second, previous=first)
        assert status(base, second, model) == 200
        assert status(base, first, model) == 200

    third = rotate(api_key.prefix, "1h")
    rotated = time.monotonic()
    refused_at = refused_by_all(proxies, first, model, deadline=rotated + PROPAGATION + 2)
    assert refused_at - rotated <= PROPAGATION

    key = ApiKey.objects.get(pk=api_key.pk)
    assert key.previous_valid_until - key.rotated_at == timedelta(hours=1)
    for base in proxies:
        assert status(base, third, model) == 200
        assert status(base, second, model) == 200, "the secret just replaced keeps its own grace"
