"""manage.py create_guardrail: a tenant's content rule, checked before it is written."""

from io import StringIO

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError

from audit.models import AuditLog
from keys.services import api_key_create
from tenants.models import Guardrail

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command("create_guardrail", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def state():
    return (
        list(Guardrail.objects.order_by("pk").values_list("pk", "name", "tenant_id")),
        AuditLog.objects.count(),
    )


def assert_fails(*args, match):
    before = state()
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert state() == before


def test_it_creates_a_guardrail_and_audits_it(acme):
    output = run(
        "no-cards", "--tenant", "acme", "--detector", "card", "--direction", "both", "--action", "mask"
    )

    assert output == "created guardrail no-cards in tenant acme: mask card on both\n"
    guardrail = Guardrail.objects.get()
    assert (guardrail.tenant, guardrail.name, guardrail.detector) == (acme, "no-cards", "card")
    assert (guardrail.direction, guardrail.action, guardrail.shadow, guardrail.is_active) == (
        "both",
        "mask",
        False,
        True,
    )
    audit = AuditLog.objects.get(action="guardrail.create")
    assert (audit.actor_label, audit.tenant, audit.target_id) == ("command", acme, str(guardrail.pk))
    assert audit.metadata["detector"] == "card" and audit.metadata["action"] == "mask"


def test_it_creates_a_shadow_regex_rule_scoped_to_keys_and_models(acme):
    api_key, _ = api_key_create(tenant=acme, name="ci")

    output = run(
        "employee-ids",
        "--tenant",
        "acme",
        "--detector",
        "regex",
        "--pattern",
        r"EMP-\d{6}",
        "--direction",
        "request",
        "--action",
        "block",
        "--shadow",
        "--models",
        "gpt-x,gpt-y",
        "--keys",
        api_key.prefix,
    )

    assert output == (
        f"created guardrail employee-ids in tenant acme: block regex on request "
        f"(shadow: record only); only models gpt-x,gpt-y, keys {api_key.prefix}\n"
    )
    guardrail = Guardrail.objects.get()
    assert (guardrail.pattern, guardrail.shadow, guardrail.models) == (r"EMP-\d{6}", True, ["gpt-x", "gpt-y"])
    assert list(guardrail.api_keys.all()) == [api_key]
    # The pattern itself stays out of the audit log.
    assert "EMP" not in str(AuditLog.objects.get(action="guardrail.create").metadata)


def test_it_creates_a_word_list(acme):
    run(
        "codenames",
        "--tenant",
        "acme",
        "--detector",
        "wordlist",
        "--words",
        "apollo, zeus ,apollo",
        "--direction",
        "response",
        "--action",
        "flag",
    )
    assert Guardrail.objects.get().words == ["apollo", "zeus"]


def test_a_catastrophic_regex_is_refused(acme):
    assert_fails(
        "bad",
        "--tenant",
        "acme",
        "--detector",
        "regex",
        "--pattern",
        r"(a+)+$",
        "--direction",
        "both",
        "--action",
        "block",
        match="backtracks catastrophically",
    )


def test_an_invalid_regex_is_refused(acme):
    assert_fails(
        "bad",
        "--tenant",
        "acme",
        "--detector",
        "regex",
        "--pattern",
        r"(unclosed",
        "--direction",
        "both",
        "--action",
        "block",
        match="invalid regular expression",
    )


def test_a_regex_rule_needs_a_pattern_and_only_regex_rules_take_one(acme):
    assert_fails(
        "bad",
        "--tenant",
        "acme",
        "--detector",
        "regex",
        "--direction",
        "both",
        "--action",
        "mask",
        match="needs --pattern",
    )
    assert_fails(
        "bad",
        "--tenant",
        "acme",
        "--detector",
        "email",
        "--pattern",
        "x",
        "--direction",
        "both",
        "--action",
        "mask",
        match="only for --detector regex",
    )


def test_an_unknown_tenant_is_refused(acme):
    assert_fails(
        "x",
        "--tenant",
        "nope",
        "--detector",
        "email",
        "--direction",
        "both",
        "--action",
        "mask",
        match="unknown tenant 'nope'",
    )


def test_a_duplicate_name_in_the_tenant_is_refused_but_another_tenant_may_use_it(acme, globex):
    run("emails", "--tenant", "acme", "--detector", "email", "--direction", "both", "--action", "mask")
    assert_fails(
        "emails",
        "--tenant",
        "acme",
        "--detector",
        "phone",
        "--direction",
        "both",
        "--action",
        "flag",
        match="already exists in tenant acme",
    )
    run("emails", "--tenant", "globex", "--detector", "email", "--direction", "both", "--action", "mask")
    assert Guardrail.objects.filter(name="emails").count() == 2


def test_a_key_of_another_tenant_is_refused(acme, globex):
    globex_key, _ = api_key_create(tenant=globex, name="theirs")
    assert_fails(
        "x",
        "--tenant",
        "acme",
        "--detector",
        "email",
        "--direction",
        "both",
        "--action",
        "mask",
        "--keys",
        globex_key.prefix,
        match=f"unknown API key {globex_key.prefix} in tenant acme",
    )


@pytest.mark.parametrize(
    "args, match",
    [
        (["--detector", "ssn", "--direction", "both", "--action", "mask"], "invalid choice: 'ssn'"),
        (
            ["--detector", "email", "--direction", "sideways", "--action", "mask"],
            "invalid choice: 'sideways'",
        ),
        (["--detector", "email", "--direction", "both", "--action", "delete"], "invalid choice: 'delete'"),
        (["--detector", "email", "--action", "mask"], "--direction"),
        (["--detector", "wordlist", "--direction", "both", "--action", "mask"], "needs --words"),
    ],
)
def test_bad_choices_and_missing_options_are_refused(acme, args, match):
    assert_fails("x", "--tenant", "acme", *args, match=match)


def test_from_the_command_line_a_bad_regex_is_one_line_on_stderr_and_exit_1(acme, capsys, monkeypatch):
    # Django closes the connections after a command run from argv: keep the test's transaction usable.
    monkeypatch.setattr("django.core.management.base.connections.close_all", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        execute_from_command_line(
            [
                "manage.py",
                "create_guardrail",
                "bad",
                "--tenant",
                "acme",
                "--detector",
                "regex",
                "--pattern",
                "(a|aa)+$",
                "--direction",
                "both",
                "--action",
                "block",
            ]
        )

    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith("CommandError: --pattern refused: the regular expression backtracks")
    assert not Guardrail.objects.exists()
