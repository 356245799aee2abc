"""Shared fixtures: two tenants (acme and the outsider globex) and their people."""

import pytest

from tenants.models import Tenant, User


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
    return User.objects.create_user("alice", password="pw-alice-123", role=User.Role.TENANT_ADMIN, tenant=acme)


@pytest.fixture
def acme_user(acme):
    return User.objects.create_user("bob", password="pw-bob-123", role=User.Role.USER, tenant=acme)


@pytest.fixture
def globex_admin(globex):
    return User.objects.create_user("charlie", password="pw-charlie-123", role=User.Role.TENANT_ADMIN, tenant=globex)
