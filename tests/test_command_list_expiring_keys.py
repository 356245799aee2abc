from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from keys.services import api_key_create, api_key_revoke


def run(*args):
    out = StringIO()
    call_command("list_expiring_keys", *args, stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


def key(tenant, name, expires_in):
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    return api_key_create(tenant=tenant, name=name, expires_at=expires_at)[0]


@pytest.fixture
def keys(acme, globex):
    created = {
        "soon": key(acme, "soon", timedelta(days=2, hours=3, minutes=1)),
        "sooner": key(globex, "sooner", timedelta(hours=5, minutes=10, seconds=30)),
        "later": key(acme, "later", timedelta(days=30)),
        "never": key(acme, "never", None),
        "expired": key(acme, "expired", timedelta(hours=-1)),
        "revoked": key(acme, "revoked", timedelta(days=1)),
    }
    api_key_revoke(api_key=created["revoked"])
    return created


@pytest.mark.django_db
def test_it_lists_keys_expiring_within_seven_days_soonest_first(keys):
    lines = run()

    sooner, soon = keys["sooner"], keys["soon"]
    assert lines == [
        f"{sooner.prefix}  globex  {sooner.expires_at.isoformat(timespec='seconds')}  in 5h 10m  sooner",
        f"{soon.prefix}  acme  {soon.expires_at.isoformat(timespec='seconds')}  in 2d 3h  soon",
        "2 API key(s) expire within 7d",
    ]


@pytest.mark.django_db
def test_within_widens_or_narrows_the_window(keys):
    assert len(run("--within", "31d")) == 4
    assert run("--within", "1h") == ["0 API key(s) expire within 1h"]


@pytest.mark.django_db
def test_tenant_limits_the_list(keys):
    lines = run("--tenant", "acme", "--within", "90d")

    assert [line.split()[0] for line in lines[:-1]] == [keys["soon"].prefix, keys["later"].prefix]
    assert lines[-1] == "2 API key(s) in tenant acme expire within 90d"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--within", "7"], "invalid duration"),
        (["--within", "0d"], "must be more than 0"),
        (["--tenant", "nope"], "unknown tenant 'nope'"),
    ],
)
@pytest.mark.django_db
def test_it_rejects_bad_input(keys, args, error):
    with pytest.raises(CommandError, match=error) as failure:
        run(*args)

    assert failure.value.returncode != 0
