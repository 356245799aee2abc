from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.management.commands import erase_user_data
from audit.models import AuditLog, RequestLog
from keys.services import api_key_create


def run(*args):
    out = StringIO()
    call_command("erase_user_data", *args, stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


def log(api_key, n, text="hello"):
    RequestLog.objects.bulk_create(
        RequestLog(
            created_at=timezone.now(),
            request_id=f"r{i}",
            tenant=api_key.tenant,
            api_key=api_key,
            key_prefix=api_key.prefix,
            endpoint="chat/completions",
            status=200,
            prompt=text,
            completion=text,
            input_tokens=3,
        )
        for i in range(n)
    )


@pytest.fixture
def logs(acme, acme_user, acme_admin):
    bob_keys = [api_key_create(tenant=acme, user=acme_user)[0] for _ in range(2)]
    alice_key = api_key_create(tenant=acme, user=acme_admin)[0]
    log(bob_keys[0], 3)
    log(bob_keys[1], 2)
    log(alice_key, 4)
    return bob_keys, alice_key


@pytest.mark.django_db
def test_it_erases_the_users_prompts_and_completions_and_nothing_else(logs, acme_user):
    lines = run("--user", str(acme_user.pk))

    assert lines == [f"erased the prompt and completion text of 5 request(s) of user bob (id {acme_user.pk})"]
    bob = RequestLog.objects.filter(api_key__user=acme_user)
    assert bob.count() == 5
    assert set(bob.values_list("prompt", "completion", "input_tokens")) == {("", "", 3)}
    alice = RequestLog.objects.exclude(api_key__user=acme_user)
    assert set(alice.values_list("prompt", "completion")) == {("hello", "hello")}
    audit = AuditLog.objects.get(action="user.erase_data")
    assert (audit.target_id, audit.tenant_id) == (str(acme_user.pk), acme_user.tenant_id)
    assert audit.metadata == {"requests_erased": 5}


@pytest.mark.django_db
def test_it_works_in_batches(logs, acme_user, monkeypatch):
    monkeypatch.setattr(erase_user_data, "BATCH_SIZE", 2)

    lines = run("--user", str(acme_user.pk))

    assert lines[0].startswith("erased the prompt and completion text of 5 request(s)")
    assert not RequestLog.objects.filter(api_key__user=acme_user).exclude(prompt="").exists()


@pytest.mark.django_db
def test_a_dry_run_counts_and_erases_nothing(logs, acme_user):
    assert run("--user", str(acme_user.pk), "--dry-run") == [
        f"5 request(s) of user bob (id {acme_user.pk}) hold text (dry run)"
    ]
    assert RequestLog.objects.filter(prompt="hello").count() == 9


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--user", "999999"], "unknown user id 999999"),
        (["--user", "bob"], "not a whole number"),
        ([], "required: --user"),
    ],
)
@pytest.mark.django_db
def test_it_rejects_bad_input_and_erases_nothing(logs, args, error):
    with pytest.raises(CommandError, match=error) as failure:
        run(*args)

    assert failure.value.returncode != 0
    assert RequestLog.objects.filter(prompt="hello").count() == 9
