import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from providers.models import ModelRoute, Provider

pytestmark = pytest.mark.django_db


def route(tenant, model, base_url, upstream_model="mock-1", *, timeout=5.0, active=True, name=None):
    provider, _ = Provider.objects.get_or_create(
        name=name or f"up-{timeout:g}",
        tenant=tenant,
        defaults={"kind": "openai_compatible", "base_url": base_url, "timeout_seconds": timeout},
    )
    return ModelRoute.objects.create(
        model=model, provider=provider, upstream_model=upstream_model, tenant=tenant, is_active=active
    )


def run(*args):
    out = StringIO()
    call_command("check_providers", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def table_rows(output):
    lines = output.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("MODEL")))
    return [
        re.split(r"\s{2,}", line) for line in lines[header + 1 :] if not line.startswith(("route ", "all "))
    ]


def test_it_probes_every_active_route_with_a_minimal_request(acme, upstream):
    route(acme, "gpt-4o", upstream.v1)
    route(None, "text-embedding-3-small", upstream.v1, "mock-embed", name="shared")
    route(acme, "retired", upstream.v1, active=False)

    output = run()

    rows = table_rows(output)
    assert [row[:5] for row in rows] == [
        ["gpt-4o", "acme", "up-5", "mock-1", "200"],
        ["text-embedding-3-small", "shared", "shared", "mock-embed", "200"],
    ]
    assert all(re.fullmatch(r"\d+ ms", row[5]) for row in rows)
    assert output.splitlines()[-1] == "all 2 routes answered"
    chat, embedding = sorted(upstream.requests(), key=lambda r: r["path"])
    assert chat["path"] == "/v1/chat/completions" and chat["body"]["max_tokens"] == 1
    assert embedding["path"] == "/v1/embeddings" and embedding["body"]["model"] == "mock-embed"


def test_it_exits_non_zero_and_names_each_failing_route(acme, upstream):
    route(acme, "ok", upstream.v1)
    broken = route(acme, "broken", upstream.v1, "mock-1?fail_status=503")
    slow = route(acme, "slow", upstream.v1, "mock-1?hang=1", timeout=0.3)
    gone = route(acme, "gone", "http://127.0.0.1:9/v1", name="nowhere")

    out = StringIO()
    with pytest.raises(CommandError, match="^3 of 4 routes failed$") as failure:
        call_command("check_providers", stdout=out, stderr=StringIO())

    assert failure.value.returncode != 0
    statuses = {row[0]: row[4] for row in table_rows(out.getvalue())}
    assert statuses == {"broken": "503", "gone": "error", "ok": "200", "slow": "timeout"}
    output = out.getvalue()
    assert f"route {broken.id} (broken -> up-5): upstream returned 503" in output
    assert f"route {slow.id} (slow -> up-0.3): upstream up-0.3 timed out after 0.3s" in output
    assert f"route {gone.id} (gone -> nowhere): upstream connection failed" in output


def test_with_a_tenant_it_probes_that_tenants_routes_and_the_shared_ones_only(acme, globex, upstream):
    route(acme, "acme-model", upstream.v1)
    route(None, "shared-model", upstream.v1, name="shared")
    route(globex, "globex-model", upstream.v1, "mock-1?fail_status=500")

    output = run("--tenant", "acme")

    assert sorted(row[0] for row in table_rows(output)) == ["acme-model", "shared-model"]
    assert not any(r["body"]["model"].endswith("500") for r in upstream.requests())


def test_it_says_so_when_there_is_nothing_to_probe(acme):
    assert run("--tenant", "acme") == "no active routes\n"


def test_an_unknown_tenant_is_an_error(db):
    with pytest.raises(CommandError, match="unknown tenant 'nope'"):
        run("--tenant", "nope")
