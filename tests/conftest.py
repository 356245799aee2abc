"""Shared fixtures: two tenants (acme and the outsider globex) and their people."""

import time

import pytest

from tenants.models import Tenant, User


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_a_deadlock():
    """Retry the truncation that ends a transactional test when PostgreSQL breaks a deadlock with it.

    The Daphne process of the end-to-end tests writes in the background (a
    minute's failed authentications go to the audit trail when the minute
    ends), so its write can meet the TRUNCATE of an unrelated test's teardown;
    PostgreSQL then aborts one of the two. The proxy keeps its rows for the
    next try; the harness has to try again too.
    """
    from django.db import OperationalError
    from django.db.backends.base.operations import BaseDatabaseOperations

    flush = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        for attempt in range(5):
            try:
                return flush(self, sql_list)
            except OperationalError:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = flush


@pytest.fixture
def acme(db):
    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def globex(db):
    """The outsider tenant: nobody of acme may see or touch its objects."""
    return Tenant.objects.create(slug="globex", name="Globex")


@pytest.fixture
def platform_admin(db):
    return User.objects.create_user("root-admin", password="pw-root-admin-123", role=User.Role.ADMIN)


@pytest.fixture
def acme_admin(acme):
    return User.objects.create_user(
        "alice", password="pw-alice-123", role=User.Role.TENANT_ADMIN, tenant=acme
    )


@pytest.fixture
def acme_user(acme):
    return User.objects.create_user("bob", password="pw-bob-123", role=User.Role.USER, tenant=acme)


@pytest.fixture
def globex_admin(globex):
    return User.objects.create_user(
        "charlie", password="pw-charlie-123", role=User.Role.TENANT_ADMIN, tenant=globex
    )


# --- end-to-end: real Daphne and a real upstream server ----------------------------
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402

from tests import servers  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def mock_upstream():
    process, base = servers.start_mock_upstream(ARTIFACTS / "logs")
    yield base
    process.stop()


@pytest.fixture(scope="session")
def proxy_server(django_db_setup, django_db_blocker, mock_upstream):
    """A Daphne process serving the proxy on the test database."""
    with django_db_blocker.unblock():
        process, base = servers.start_daphne(ARTIFACTS / "logs")
    process.base_url = base
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _proxy_usage_written(request):
    """After a test that used the proxy, wait until the proxy wrote its usage rows.

    The proxy writes them in batches just after each answer; the test's
    teardown truncating the tables meanwhile deadlocks with that write on
    PostgreSQL.
    """
    yield
    if "proxy_server" not in request.fixturenames:
        return
    base = request.getfixturevalue("proxy_server").base_url
    time.sleep(0.05)  # an answer's accounting runs just after its last byte
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{base}/metrics").text
        if "\nllmproxy_usage_backlog 0.0\n" in metrics:
            return
        time.sleep(0.05)


@pytest.fixture
def proxy_without_tracebacks(proxy_server):
    """The session's proxy; after the test, it has logged no traceback meanwhile."""
    start = proxy_server.log_path.stat().st_size
    yield proxy_server
    with open(proxy_server.log_path, "rb") as log:
        log.seek(start)
        written = log.read().decode(errors="replace")
    assert "Traceback" not in written, written[-3000:]


@pytest.fixture
def upstream(mock_upstream):
    """The mock upstream, with its memory of requests and streams cleared."""
    httpx.delete(f"{mock_upstream}/_mock/requests")
    return UpstreamProbe(mock_upstream)


class UpstreamProbe:
    def __init__(self, base):
        self.base = base
        self.v1 = f"{base}/v1"

    def requests(self):
        return httpx.get(f"{self.base}/_mock/requests").json()

    def streams(self):
        return httpx.get(f"{self.base}/_mock/streams").json()

    def streams_until_ended(self, upstream_model, timeout=5.0):
        """The streams of ``upstream_model``, once the last one is no longer "started" (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            streams = [s for s in self.streams() if s["model"] == upstream_model]
            if streams and streams[-1]["outcome"] != "started":
                break
            time.sleep(0.05)
        return streams


@pytest.fixture
def unique_model():
    """A public model name no other test uses (the proxy caches routes by tenant)."""
    return f"m-{uuid.uuid4().hex[:10]}"
