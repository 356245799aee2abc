"""GET /metrics answers only the scrapers the settings allow: by network, and by token when one is set."""

import ipaddress
import os
import subprocess
import sys

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.django_db

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def networks(*cidrs):
    return [ipaddress.ip_network(c) for c in cidrs]


def scrape(client, address, **headers):
    return client.get("/metrics", REMOTE_ADDR=address, headers=headers)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_by_default_a_scraper_on_this_host_gets_the_metrics(client, address):
    response = scrape(client, address)

    assert response.status_code == 200
    assert response["Content-Type"] == PROMETHEUS
    assert b"# TYPE llmproxy_requests_total counter" in response.content


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.1.5", "172.17.0.2", "203.0.113.9", "2001:db8::1"])
def test_by_default_any_other_address_is_refused(client, address):
    response = scrape(client, address)

    assert response.status_code == 403
    assert b"llmproxy" not in response.content


def test_allowed_networks_replace_the_default(client, settings):
    settings.LLMPROXY_METRICS_ALLOWED_NETWORKS = networks("10.0.0.0/8", "fd00::/8")

    assert scrape(client, "10.200.0.1").status_code == 200
    assert scrape(client, "fd12::7").status_code == 200
    assert scrape(client, "127.0.0.1").status_code == 403
    assert scrape(client, "11.0.0.1").status_code == 403


def test_with_a_token_the_scraper_must_send_it(client, settings):
    settings.LLMPROXY_METRICS_TOKEN = "s3cret-scrape-token"

    missing = scrape(client, "127.0.0.1")
    wrong = scrape(client, "127.0.0.1", authorization="Bearer not-it")
    basic = scrape(client, "127.0.0.1", authorization="Basic s3cret-scrape-token")
    right = scrape(client, "127.0.0.1", authorization="Bearer s3cret-scrape-token")

    assert [r.status_code for r in (missing, wrong, basic)] == [401, 401, 401]
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"llmproxy" not in missing.content + wrong.content + basic.content
    assert right.status_code == 200 and b"llmproxy_requests_total" in right.content


def test_the_token_does_not_open_the_door_to_a_network_not_allowed(client, settings):
    settings.LLMPROXY_METRICS_TOKEN = "s3cret-scrape-token"

    outsider = scrape(client, "203.0.113.9", authorization="Bearer s3cret-scrape-token")

    assert outsider.status_code == 403


def test_a_token_alone_is_enough_when_every_network_is_allowed(client, settings):
    settings.LLMPROXY_METRICS_TOKEN = "s3cret-scrape-token"
    settings.LLMPROXY_METRICS_ALLOWED_NETWORKS = networks("0.0.0.0/0", "::/0")

    assert scrape(client, "203.0.113.9", authorization="Bearer s3cret-scrape-token").status_code == 200
    assert scrape(client, "203.0.113.9").status_code == 401


def test_an_unparseable_client_address_is_refused(client):
    assert scrape(client, "").status_code == 403


# --- the settings, read once per process --------------------------------------------------------


def settings_of(**env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("LLMPROXY_METRICS", "PYTEST"))}
    environment.update({"DJANGO_SETTINGS_MODULE": "llmproxy.settings_test", **env})
    code = (
        "from django.conf import settings as s; "
        "print([str(n) for n in s.LLMPROXY_METRICS_ALLOWED_NETWORKS], bool(s.LLMPROXY_METRICS_TOKEN))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_the_settings_read_networks_and_a_token_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("from-a-file\n")

    result = settings_of(
        LLMPROXY_METRICS_ALLOWED_NETWORKS="10.0.0.0/8, 192.168.0.1", LLMPROXY_METRICS_TOKEN_FILE=str(token)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['10.0.0.0/8', '192.168.0.1/32'] True"


def test_a_malformed_network_stops_the_start_naming_the_variable():
    result = settings_of(LLMPROXY_METRICS_ALLOWED_NETWORKS="10.0.0.0/8,not-a-network")

    assert result.returncode != 0
    assert "LLMPROXY_METRICS_ALLOWED_NETWORKS: 'not-a-network' is not a network" in result.stderr


def test_a_multiprocess_directory_that_does_not_exist_stops_the_start(tmp_path):
    result = settings_of(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "missing"))

    assert result.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR" in result.stderr and "is not a directory" in result.stderr


def test_a_scraper_that_addresses_the_process_by_its_ip_is_answered(client):
    # Prometheus' service discovery sends Host: <pod or container IP>:<port>, which ALLOWED_HOSTS never lists.
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_HOST="172.18.0.5:8000")

    assert response.status_code == 200
    assert client.get("/healthz", HTTP_HOST="172.18.0.5:8000").status_code == 400  # the rest still checks it
