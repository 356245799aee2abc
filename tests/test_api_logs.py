from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from audit.models import AuditLog, RequestLog
from audit.services import audit_record
from keys.services import api_key_create
from tests.api_support import API, ids

pytest_plugins = ["tests.api_fixtures"]


def request_row(tenant, api_key, *, minutes_ago, model="m", status=200):
    return RequestLog.objects.create(
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        request_id=f"r-{minutes_ago}",
        tenant=tenant,
        api_key=api_key,
        key_prefix=api_key.prefix if api_key else "",
        endpoint="chat/completions",
        model=model,
        status=status,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("log", ["audit-logs", "request-logs"])
def test_who_sees_which_log_rows(platform, alice, charlie, bob, acme_world, globex_world, log):
    name = "audit_log" if log == "audit-logs" else "request_log"
    acme_rows = set(ids(alice.get(f"{API}/{log}/")))
    globex_rows = set(ids(charlie.get(f"{API}/{log}/")))

    assert acme_world[name].pk in acme_rows and globex_world[name].pk in globex_rows
    assert not acme_rows & globex_rows
    assert acme_rows | globex_rows <= set(ids(platform.get(f"{API}/{log}/")))
    assert bob.get(f"{API}/{log}/").status_code == 403
    assert bob.get(f"{API}/{log}/{acme_world[name].pk}/").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("log", ["audit-logs", "request-logs"])
def test_the_outsider_cannot_read_another_tenants_row_nor_write_any(charlie, alice, acme_world, log):
    row = acme_world["audit_log" if log == "audit-logs" else "request_log"]

    assert charlie.get(f"{API}/{log}/{row.pk}/").status_code == 404
    assert charlie.get(f"{API}/{log}/?tenant=acme").json()["results"] == []
    # Read-only for everyone.
    assert alice.delete(f"{API}/{log}/{row.pk}/").status_code == 405
    assert alice.post(f"{API}/{log}/", {}).status_code == 405


@pytest.mark.django_db
def test_request_logs_filter_by_time_key_model_and_status(alice, acme, acme_world):
    key = acme_world["api_key"]
    other_key, _ = api_key_create(tenant=acme, name="other")
    old = request_row(acme, key, minutes_ago=120, model="gpt-4o", status=429)
    new = request_row(acme, other_key, minutes_ago=1, model="gpt-4o", status=200)
    since = (timezone.now() - timedelta(minutes=60)).isoformat()

    def query(**params):
        return ids(alice.get(f"{API}/request-logs/", params))

    assert query(model="gpt-4o") == sorted([old.pk, new.pk])
    assert query(model="gpt-4o", status=429) == [old.pk]
    assert query(key=other_key.prefix) == [new.pk]
    assert old.pk not in query(since=since) and new.pk in query(since=since)
    assert query(until=since) == [old.pk]


@pytest.mark.django_db
def test_only_the_detail_of_a_request_shows_its_stored_text(alice, acme_world):
    row = acme_world["request_log"]

    listed = alice.get(f"{API}/request-logs/").json()["results"][0]
    detail = alice.get(f"{API}/request-logs/{row.pk}/").json()

    assert "prompt" not in listed and (detail["prompt"], detail["completion"]) == ("hi", "hello")


@pytest.mark.django_db
def test_audit_logs_filter_by_action_and_key_and_show_the_chain(alice, acme, acme_world):
    key = acme_world["api_key"]
    audit_record(action="other.event", tenant=acme)

    created = alice.get(f"{API}/audit-logs/", {"action": "api_key.create"}).json()["results"]
    about_key = alice.get(f"{API}/audit-logs/", {"key": key.prefix}).json()["results"]

    assert [row["target_id"] for row in created] == [str(key.pk)]
    assert {row["target_id"] for row in about_key} == {str(key.pk)}
    row = AuditLog.objects.get(pk=created[0]["id"])
    assert (created[0]["seq"], created[0]["row_hash"]) == (row.seq, row.row_hash)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"status": "abc"},
        {"status": 99},
        {"key": "lp-short"},
        {"tenant": "Not A Slug!"},
        {"cursor": "garbage"},
        {"since": "9999-12-31T23:59:59-14:00"},
    ],
)
def test_bad_filters_are_refused_not_failed(platform, acme_world, params):
    response = platform.get(f"{API}/request-logs/", params)

    assert response.status_code in (400, 404)
    assert "error" in response.json()


@pytest.mark.django_db
def test_the_cursor_walks_every_row_once_newest_first(alice, acme, acme_world):
    rows = [request_row(acme, acme_world["api_key"], minutes_ago=m) for m in (50, 40, 30, 20, 10)]
    expected = [r.pk for r in reversed(rows)] + [acme_world["request_log"].pk]
    expected.sort(key=lambda pk: RequestLog.objects.get(pk=pk).created_at, reverse=True)

    seen, url = [], f"{API}/request-logs/?page_size=2"
    while url:
        body = alice.get(url).json()
        assert "count" not in body  # no COUNT(*) over a log table
        seen += [row["id"] for row in body["results"]]
        url = body["next"] and urlsplit(body["next"])._replace(scheme="", netloc="").geturl()

    assert seen == expected
