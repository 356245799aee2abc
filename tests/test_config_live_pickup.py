"""A running proxy (a real Daphne) follows what apply_config writes, within 5 seconds."""

import time
from io import StringIO

import openai
import pytest
from django.core.management import call_command

from tests.gateway_helpers import client

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello there"}]
PICKUP_SECONDS = 5.0


def apply(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    out = StringIO()
    call_command("apply_config", str(path), stdout=out, stderr=StringIO())
    return out.getvalue()


def new_key(output):
    lines = output.splitlines()
    prefix_at = next(n for n, line in enumerate(lines) if line.startswith("prefix: "))
    return lines[prefix_at + 1]


def within_pickup_time(check):
    """Run ``check`` until it passes; fail if it still does not PICKUP_SECONDS after the change."""
    deadline = time.monotonic() + PICKUP_SECONDS
    while True:
        try:
            return check()
        except (AssertionError, openai.APIError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def config(model, upstream_base, *, upstream_model="mock-1", route_active=True, tenant_active=True):
    return f"""\
tenants:
  - slug: acme
    name: Acme
    active: {str(tenant_active).lower()}
    api_keys:
      - name: app-{model}
providers:
  - name: up-{model}
    kind: openai_compatible
    base_url: {upstream_base}
    tenant: acme
routes:
  - model: {model}
    provider: up-{model}
    upstream_model: {upstream_model}
    active: {str(route_active).lower()}
    tenant: acme
"""


def test_a_route_applied_from_a_file_answers_at_once_and_its_changes_follow(
    proxy_server, acme, upstream, unique_model, tmp_path
):
    output = apply(tmp_path, config(unique_model, upstream.v1))
    proxy = client(proxy_server, new_key(output))

    answer = proxy.chat.completions.create(model=unique_model, messages=HELLO)
    assert answer.choices[0].message.content == "Mock answer to: Hello there"
    assert upstream.requests()[-1]["body"]["model"] == "mock-1"

    output = apply(tmp_path, config(unique_model, upstream.v1, upstream_model="mock-2"))
    assert "  upstream_model: mock-1 -> mock-2" in output

    def sends_the_new_upstream_model():
        proxy.chat.completions.create(model=unique_model, messages=HELLO)
        assert upstream.requests()[-1]["body"]["model"] == "mock-2"

    within_pickup_time(sends_the_new_upstream_model)

    apply(tmp_path, config(unique_model, upstream.v1, upstream_model="mock-2", route_active=False))

    def is_no_longer_routed():
        try:
            proxy.chat.completions.create(model=unique_model, messages=HELLO)
        except openai.NotFoundError:
            return
        raise AssertionError("the deactivated route still answers")

    within_pickup_time(is_no_longer_routed)


def test_a_tenant_deactivated_by_a_file_is_refused_within_5_seconds(
    proxy_server, acme, upstream, unique_model, tmp_path
):
    proxy = client(proxy_server, new_key(apply(tmp_path, config(unique_model, upstream.v1))))
    proxy.chat.completions.create(model=unique_model, messages=HELLO)

    apply(tmp_path, config(unique_model, upstream.v1, tenant_active=False))

    def is_refused():
        try:
            proxy.chat.completions.create(model=unique_model, messages=HELLO)
        except openai.AuthenticationError:
            return
        raise AssertionError("the deactivated tenant's key still works")

    within_pickup_time(is_refused)
