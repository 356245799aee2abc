"""JSON logs: one object per line for every logger, and the access line of a proxied request."""

import io
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from llmproxy.gateway.usage import UsageRecord
from llmproxy.logging_json import JsonFormatter, log_request
from tests.servers import ROOT


@pytest.fixture
def access_lines():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("llmproxy.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [orjson.loads(line) for line in out.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


def record(**fields):
    values = dict(
        created_at=datetime.now(UTC),
        request_id="req_abc",
        tenant_id=1,
        api_key_id=2,
        key_prefix="lp-AbCdEfGh",
        endpoint="chat",
        model="smart",
        status=200,
        stream=False,
        provider="primary",
        upstream_model="gpt-4o-mini",
        input_tokens=12,
        output_tokens=34,
        tokens_estimated=False,
        cost=Decimal("0.000080"),
        latency_ms=250.456,
        ttfb_ms=80.0,
        attempts=[{"route": 3, "status": 503}, {"route": 4, "status": 200}],
    )
    values.update(fields)
    return UsageRecord(**values)


def test_a_proxied_request_is_one_json_line_with_who_what_and_how_it_went(access_lines):
    log_request(record(), tenant="acme")

    [line] = access_lines()
    assert line["logger"] == "llmproxy.access"
    assert line["level"] == "INFO"
    assert line["message"] == "req_abc chat smart 200 250ms"
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert {k: v for k, v in line.items() if k not in ("time", "level", "logger", "message")} == {
        "request_id": "req_abc",
        "tenant": "acme",
        "key_prefix": "lp-AbCdEfGh",
        "endpoint": "chat",
        "model": "smart",
        "stream": False,
        "provider": "primary",
        "upstream_model": "gpt-4o-mini",
        "route_id": 4,
        "attempts": 2,
        "status": 200,
        "error_type": "",
        "cache_hit": False,
        "input_tokens": 12,
        "output_tokens": 34,
        "tokens_estimated": False,
        "cost": 0.00008,
        "latency_ms": 250.46,
        "ttfb_ms": 80.0,
    }


def test_a_failed_request_names_the_last_route_tried_and_its_error(access_lines):
    log_request(
        record(
            status=502,
            error_type="upstream_error",
            ttfb_ms=None,
            attempts=[{"route": 3, "status": 503}, {"route": 5, "status": 0}],
        ),
        tenant="acme",
    )

    [line] = access_lines()
    assert (line["status"], line["error_type"], line["route_id"], line["ttfb_ms"]) == (
        502,
        "upstream_error",
        5,
        None,
    )


def test_a_request_refused_before_any_route_has_no_route(access_lines):
    log_request(record(status=401, key_prefix="", provider="", upstream_model="", attempts=[]), tenant="")

    [line] = access_lines()
    assert (line["status"], line["tenant"], line["key_prefix"], line["route_id"]) == (401, "", "", None)


def test_the_access_log_can_be_turned_off(access_lines):
    logging.getLogger("llmproxy.access").setLevel(logging.WARNING)

    log_request(record(), tenant="acme")

    assert access_lines() == []


def test_any_logger_writes_one_json_object_per_line_with_its_extras_and_traceback():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logging_json")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("it failed for %s", "acme", extra={"status_code": 500, "request": object()})
    finally:
        logger.removeHandler(handler)

    [text] = out.getvalue().splitlines()
    line = orjson.loads(text)
    assert (line["logger"], line["level"]) == ("tests.logging_json", "ERROR")
    assert line["message"] == "it failed for acme"
    assert line["status_code"] == 500
    assert line["request"].startswith("<object object")
    assert line["exc"].startswith("Traceback") and "ValueError: bad\nthing" in line["exc"]


# --- LOG_FORMAT in the settings (each a fresh process: settings are read once) ------------------------

PROBE = """
import logging, django
django.setup()
logging.getLogger("django.request").warning("Not Found: %s", "/nowhere", extra={"status_code": 404})
"""


def run_django(**env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "DEBUG", "PYTEST"))}
    environment.update({"DJANGO_SETTINGS_MODULE": "llmproxy.settings_test", **env})
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_djangos_own_logs_are_json_by_default():
    result = run_django()

    assert result.returncode == 0, result.stderr
    [line] = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert (line["logger"], line["level"], line["message"], line["status_code"]) == (
        "django.request",
        "WARNING",
        "Not Found: /nowhere",
        404,
    )


def test_log_format_plain_gives_plain_lines_and_so_does_debug():
    for env in ({"LOG_FORMAT": "plain"}, {"DEBUG": "true"}):
        result = run_django(**env)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip().endswith("WARNING django.request Not Found: /nowhere")


def test_an_unknown_log_format_stops_the_start():
    result = run_django(LOG_FORMAT="xml")

    assert result.returncode != 0
    assert "LOG_FORMAT must be json or plain" in result.stderr
