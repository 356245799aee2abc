"""`make serve WORKERS=N` (deploy/fleet.py): restarts and stops under load drop no request nor usage row."""

import concurrent.futures
import os
import signal
import time

import httpx
import pytest

from tests.fleet_support import Fleet, Load, usage_written
from tests.gateway_helpers import make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello"}]
# Every answer takes a while, so that processes are always in the middle of some when they are replaced.
SLOW = "mock-1?latency_ms=80&chunks=4&chunk_delay_ms=40"


def start_fleet(django_db_blocker, name):
    with django_db_blocker.unblock():
        return Fleet(name)


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker, mock_upstream):
    fleet = start_fleet(django_db_blocker, "fleet-rolling")
    yield fleet
    fleet.stop()


@pytest.fixture
def fleet_to_stop(django_db_setup, django_db_blocker, mock_upstream):
    fleet = start_fleet(django_db_blocker, "fleet-stop")
    yield fleet
    fleet.stop()


def chat(fleet, client, plain, model, stream):
    response = client.post(
        f"{fleet.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {plain}"},
        json={"model": model, "messages": HELLO, "stream": stream},
    )
    if stream and response.status_code == 200 and not response.text.rstrip().endswith("data: [DONE]"):
        return "stream cut short"
    return response.status_code


def assert_one_row_per_request(model, count):
    wait_for_logs(count, timeout=20, model=model)
    assert usage_written(model) == count


def test_a_rolling_restart_under_load_answers_every_request_and_records_each_once(
    fleet, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model=SLOW)
    _, plain = make_key(acme)
    old_pids = fleet.pids()

    load = Load(lambda client, i, n: chat(fleet, client, plain, unique_model, stream=n % 2 == 1))
    load.wait_for(30)
    restarted = fleet.fleet_command("restart")
    served_during_restart = load.sent
    load.wait_for(served_during_restart + 30)
    outcomes = load.stop()

    assert restarted.returncode == 0, restarted.stderr + fleet.log()
    assert outcomes == {200: load.sent}, outcomes  # no connection error, no 5xx, no stream cut short
    assert set(fleet.pids()).isdisjoint(old_pids)  # every process was replaced
    assert all(count > 0 for count in fleet.served().values())
    assert_one_row_per_request(unique_model, load.sent)


def test_a_process_that_dies_is_replaced_and_its_requests_go_elsewhere(fleet, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1)
    _, plain = make_key(acme)
    victim = fleet.pids()[0]
    load = Load(lambda client, i, n: chat(fleet, client, plain, unique_model, stream=False), threads=3)
    load.wait_for(10)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in fleet.pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    load.wait_for(load.sent + 20)
    outcomes = load.stop()
    assert victim not in fleet.pids()
    # Only what the killed process was answering is lost (one request per thread at most);
    # connections it refused were retried on the others.
    assert load.sent - outcomes[200] <= 3, outcomes
    usage_written(unique_model)


def test_stopping_the_fleet_lets_the_answers_in_progress_finish_and_records_them(
    fleet_to_stop, acme, upstream, unique_model
):
    fleet = fleet_to_stop
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?chunks=8&chunk_delay_ms=100")
    _, plain = make_key(acme)

    def stream(_):
        with httpx.Client(timeout=30) as client:
            return chat(fleet, client, plain, unique_model, stream=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        answers = [pool.submit(stream, i) for i in range(6)]
        deadline = time.monotonic() + 10
        while sum(fleet.served().values()) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        stopped = fleet.fleet_command("stop")
        statuses = [answer.result() for answer in answers]

    assert stopped.returncode == 0, stopped.stderr
    assert statuses == [200] * 6
    assert fleet.process.wait(10) == 0
    assert_one_row_per_request(unique_model, 6)
