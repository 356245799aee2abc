"""Every change made through the API leaves one audit row: who, what, which object, address, tenant."""

import pytest

from audit.chain import verify_chain
from audit.models import AuditLog
from tests.api_support import API

pytest_plugins = ["tests.api_fixtures"]

# (method, path with {name} of an acme_world object, payload, audit action)
CHANGES = [
    ("patch", "tenants/{tenant}/", {"name": "Acme Two"}, "tenant.update"),
    ("post", "users/", {"username": "dave", "role": "user"}, "user.create"),
    ("patch", "users/{user}/", {"email": "bob@example.com"}, "user.update"),
    ("delete", "users/{user}/", None, "user.delete"),
    ("post", "keys/", {"name": "new"}, "api_key.create"),
    ("patch", "keys/{api_key}/", {"name": "renamed"}, "api_key.update"),
    ("post", "keys/{api_key}/rotate", {"grace": "1h"}, "api_key.rotate"),
    ("post", "keys/{api_key}/revoke", None, "api_key.revoke"),
    ("post", "providers/", {"name": "p2", "kind": "mock"}, "provider.create"),
    ("patch", "providers/{provider}/", {"api_key": "sk-x"}, "provider.update"),
    ("delete", "providers/{provider}/", None, "provider.delete"),
    (
        "post",
        "model-routes/",
        {"model": "m2", "provider": "{provider}", "upstream_model": "u"},
        "model_route.create",
    ),
    ("patch", "model-routes/{route}/", {"weight": 7}, "model_route.update"),
    ("delete", "model-routes/{route}/", None, "model_route.delete"),
    ("post", "quotas/", {"metric": "cost", "period": "day", "limit": "5"}, "quota_limit.create"),
    ("patch", "quotas/{quota}/", {"limit": 99}, "quota_limit.update"),
    ("delete", "quotas/{quota}/", None, "quota_limit.delete"),
]


def fill(value, world):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return world[value[1:-1]].pk
    return value


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "payload", "action"), CHANGES, ids=[c[3] + ":" + c[0] for c in CHANGES]
)
def test_each_change_writes_one_audit_row(alice, acme_admin, acme_world, method, path, payload, action):
    url = f"{API}/" + path.format(**{k: getattr(v, "pk", "") for k, v in acme_world.items()})
    body = {k: fill(v, acme_world) for k, v in (payload or {}).items()}
    before = AuditLog.objects.count()

    response = getattr(alice, method)(url, body)

    assert response.status_code in (200, 201, 204), response.content
    assert AuditLog.objects.count() == before + 1
    row = AuditLog.objects.latest("id")
    assert (row.action, row.actor, row.actor_label) == (action, acme_admin, "user:alice")
    assert (row.ip, row.tenant) == ("203.0.113.5", acme_world["tenant"])
    assert row.target_id
    assert verify_chain(row.chain).problem is None


@pytest.mark.django_db
def test_a_refused_change_writes_nothing(alice, acme_world):
    before = AuditLog.objects.count()

    alice.patch(f"{API}/tenants/{acme_world['tenant'].pk}/", {"is_active": False})
    alice.post(f"{API}/quotas/", {"metric": "cost", "period": "day", "limit": "-5"})

    assert AuditLog.objects.count() == before
