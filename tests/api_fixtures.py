"""Fixtures of the REST API tests: clients of the three roles and of the outsider, objects of both tenants.

Loaded by the test modules with ``pytest_plugins = ["tests.api_fixtures"]``.
The outsider is globex's tenant admin (charlie): every acme object must be
invisible to them, whichever way it is asked for.
"""

import pytest
from rest_framework.test import APIClient

from providers.models import ModelRoute, Provider
from tests.api_support import client_for, populate


@pytest.fixture
def platform(platform_admin):
    return client_for(platform_admin)


@pytest.fixture
def alice(acme_admin):
    """acme's tenant admin."""
    return client_for(acme_admin)


@pytest.fixture
def bob(acme_user):
    """A user (role user) of acme."""
    return client_for(acme_user)


@pytest.fixture
def charlie(globex_admin):
    """globex's tenant admin: the outsider."""
    return client_for(globex_admin)


@pytest.fixture
def anonymous(db):
    return APIClient()


@pytest.fixture
def acme_world(acme, acme_user):
    return populate(acme, acme_user)


@pytest.fixture
def globex_world(globex, globex_admin):
    return populate(globex, globex_admin)


@pytest.fixture
def shared(db):
    provider = Provider.objects.create(name="shared-mock", kind="mock")
    return {
        "provider": provider,
        "route": ModelRoute.objects.create(model="shared-model", provider=provider, upstream_model="m"),
    }
