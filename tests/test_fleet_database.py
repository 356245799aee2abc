"""PostgreSQL for a fleet: reports read from DATABASE_REPLICA_URL, a connection pool sized by settings."""

import json
import subprocess
import sys

import pytest
from django.db import connections
from django.utils import timezone

from audit.models import AuditLog, RequestLog
from keys.models import ApiKey
from llmproxy.db_router import ReplicaRouter
from providers.models import ModelRoute
from quotas.models import TokenUsageMetric
from tests import servers
from tests.gateway_helpers import make_key

router = ReplicaRouter()


def django_process(code, **env):
    """Run CODE after django.setup() in a process configured like the proxy, plus ENV."""
    return subprocess.run(
        [sys.executable, "-c", "import django, json; django.setup()\n" + code],
        cwd=servers.ROOT, capture_output=True, text=True, timeout=60,
        env=servers.proxy_env(**env),
    )  # fmt: skip


# --- the router ------------------------------------------------------------------------------


def test_usage_reports_are_read_from_the_replica():
    assert router.db_for_read(RequestLog) == "replica"
    assert router.db_for_read(TokenUsageMetric) == "replica"


def test_what_the_request_path_and_the_audit_chain_read_comes_from_the_primary():
    for model in (ApiKey, ModelRoute, AuditLog):
        assert router.db_for_read(model) == "default"


def test_inside_a_transaction_reports_are_read_from_the_primary(monkeypatch):
    monkeypatch.setattr(connections["default"], "in_atomic_block", True)
    assert router.db_for_read(RequestLog) == "default"


def test_every_write_and_migration_goes_to_the_primary():
    assert router.db_for_write(RequestLog) == router.db_for_write(ApiKey) == "default"
    assert router.allow_migrate("default", "audit")
    assert not router.allow_migrate("replica", "audit")
    assert router.allow_relation(RequestLog(), ApiKey())


# --- the replica, for real: the same database under a second alias ------------------------------


@pytest.mark.django_db(transaction=True)
def test_with_a_replica_url_reports_are_read_through_it_and_see_the_rows(acme):
    api_key, _ = make_key(acme)
    RequestLog.objects.create(created_at=timezone.now(), tenant=acme, api_key=api_key, endpoint="chat",
                              model="replica-probe", status=200)  # fmt: skip
    done = django_process(
        """
from audit.models import RequestLog
from keys.models import ApiKey
logs = RequestLog.objects.filter(model="replica-probe")
print(json.dumps({"logs": logs.db, "count": logs.count(), "keys": ApiKey.objects.all().db}))
""",
        DATABASE_REPLICA_URL=servers.test_database_url(),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"logs": "replica", "count": 1, "keys": "default"}


def test_without_a_replica_url_there_is_one_database_and_no_router():
    done = django_process(
        "from django.conf import settings\n"
        "print(json.dumps([sorted(settings.DATABASES), settings.DATABASE_ROUTERS]))"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [["default"], []]


# --- the pool -----------------------------------------------------------------------------------

POSTGRES = "postgres://postgres@127.0.0.1:5432/llmproxy"
SHOW_DEFAULT = (
    "from django.conf import settings\n"
    "db = settings.DATABASES['default']\n"
    "print(json.dumps([db['OPTIONS'].get('pool'), db['CONN_MAX_AGE']]))"
)


def test_database_pool_max_turns_on_psycopgs_pool_sized_by_the_settings():
    done = django_process(
        SHOW_DEFAULT, DATABASE_URL=POSTGRES, DATABASE_POOL_MIN=2, DATABASE_POOL_MAX=12, ASGI_THREADS=8
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"min_size": 2, "max_size": 12, "timeout": 10.0}, 0]


def test_without_a_pool_connections_persist_per_thread():
    done = django_process(SHOW_DEFAULT, DATABASE_URL=POSTGRES)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [None, 60]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DATABASE_URL": "sqlite:///x.sqlite3", "DATABASE_POOL_MAX": "8"},
         "DATABASE_POOL_MAX needs PostgreSQL"),
        ({"DATABASE_URL": POSTGRES, "DATABASE_POOL_MIN": "9", "DATABASE_POOL_MAX": "8", "ASGI_THREADS": "2"},
         "DATABASE_POOL_MIN must not be larger"),
        ({"DATABASE_URL": POSTGRES, "DATABASE_POOL_MAX": "8", "ASGI_THREADS": "8"},
         "DATABASE_POOL_MAX must be at least 10"),
        ({"DATABASE_URL": POSTGRES, "DATABASE_REPLICA_URL": "sqlite:///x.sqlite3"},
         "must be the same kind of database"),
    ],
)  # fmt: skip
def test_a_pool_or_replica_that_cannot_work_stops_the_process_with_the_reason(env, message):
    done = django_process("print('started')", **env)
    assert done.returncode != 0
    assert message in done.stderr
