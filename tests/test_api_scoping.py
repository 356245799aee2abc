"""The guarantees of the base view, for every endpoint at once: a view cannot skip the tenant scope."""

import pytest
from django.urls import URLPattern, get_resolver

from llmproxy.api import scoping
from llmproxy.api.base import ApiView, ScopedApi
from tests.api_support import API

pytest_plugins = ["tests.api_fixtures"]

# URL name -> the acme object its {id} names.
DETAIL = {
    "tenant-detail": "tenant",
    "user-detail": "user",
    "key-detail": "api_key",
    "key-rotate": "api_key",
    "key-revoke": "api_key",
    "provider-detail": "provider",
    "model-route-detail": "route",
    "quota-detail": "quota",
    "guardrail-detail": "guardrail",
    "audit-log-detail": "audit_log",
    "request-log-detail": "request_log",
}


def api_patterns():
    return [p for p in get_resolver("llmproxy.api.urls").url_patterns if isinstance(p, URLPattern)]


def path_of(pattern, pk=None):
    return f"{API}/" + str(pattern.pattern).replace("<int:pk>", str(pk))


def test_a_view_that_overrides_get_queryset_is_refused_at_import():
    with pytest.raises(TypeError, match="base_queryset"):

        class Careless(ScopedApi):  # noqa: F841
            def get_queryset(self):
                return []


def test_every_api_view_is_role_checked_and_every_model_has_a_scoping_rule():
    for pattern in api_patterns():
        view = pattern.callback.view_class
        assert issubclass(view, ApiView), pattern.name
        if issubclass(view, ScopedApi):
            assert scoping.rule_for(view.model) is not None


def test_every_detail_endpoint_is_covered_by_the_sweep_below():
    with_id = {p.name for p in api_patterns() if "<int:pk>" in str(p.pattern)}

    assert with_id == set(DETAIL)


@pytest.mark.django_db
def test_the_outsider_reaches_no_acme_object_through_any_endpoint(charlie, acme_world, globex_world, shared):
    acme_ids = {name: obj.pk for name, obj in acme_world.items() if hasattr(obj, "pk")}
    for pattern in api_patterns():
        if pattern.name in DETAIL:
            url = path_of(pattern, acme_ids[DETAIL[pattern.name]])
            for method in ("get", "patch", "post", "delete"):
                status = getattr(charlie, method)(url, {}).status_code
                assert status in (403, 404, 405), (method, url, status)
        elif pattern.name.endswith("-list"):
            for params in ({}, {"tenant": "acme"}):
                rows = charlie.get(path_of(pattern), params).json()["results"]
                owners = {row["id"] if pattern.name == "tenant-list" else row["tenant"] for row in rows}
                assert acme_world["tenant"].pk not in owners, (pattern.name, params)


@pytest.mark.django_db
def test_a_user_reaches_only_keys_usage_and_themselves(bob, acme_world):
    allowed = {"me", "key-list", "key-detail", "key-rotate", "key-revoke", "usage", "token"}
    for pattern in api_patterns():
        if pattern.name in allowed:
            continue
        url = (
            path_of(pattern, acme_world[DETAIL[pattern.name]].pk)
            if pattern.name in DETAIL
            else path_of(pattern)
        )
        assert bob.get(url).status_code in (403, 405), pattern.name
