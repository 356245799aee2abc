import pytest

from providers.models import ModelRoute
from tests.api_support import API, error_of, ids, last_audit

pytest_plugins = ["tests.api_fixtures"]


@pytest.mark.django_db
def test_who_sees_which_routes(platform, alice, charlie, bob, acme_world, globex_world, shared):
    acme_r, globex_r, shared_r = acme_world["route"], globex_world["route"], shared["route"]

    assert ids(platform.get(f"{API}/model-routes/")) == sorted([acme_r.pk, globex_r.pk, shared_r.pk])
    assert ids(alice.get(f"{API}/model-routes/")) == sorted([acme_r.pk, shared_r.pk])
    assert ids(charlie.get(f"{API}/model-routes/")) == sorted([globex_r.pk, shared_r.pk])
    assert bob.get(f"{API}/model-routes/").status_code == 403
    assert bob.get(f"{API}/model-routes/{acme_r.pk}/").status_code == 403


@pytest.mark.django_db
def test_the_outsider_cannot_read_change_or_delete_another_tenants_route(charlie, acme_world):
    route = acme_world["route"]

    assert charlie.get(f"{API}/model-routes/{route.pk}/").status_code == 404
    assert charlie.patch(f"{API}/model-routes/{route.pk}/", {"weight": 9}).status_code == 404
    assert charlie.delete(f"{API}/model-routes/{route.pk}/").status_code == 404
    assert ModelRoute.objects.get(pk=route.pk).weight == 1


@pytest.mark.django_db
def test_a_tenant_admin_routes_a_model_to_their_provider_or_a_shared_one(
    alice, acme, acme_admin, acme_world, shared
):
    for provider in (acme_world["provider"], shared["provider"]):
        response = alice.post(
            f"{API}/model-routes/",
            {
                "model": "gpt-4o",
                "provider": provider.pk,
                "upstream_model": "gpt-4o-2024",
                "input_price": "2.5",
            },
        )
        assert response.status_code == 201
        assert response.json()["tenant"] == acme.pk and response.json()["input_price"] == "2.500000"
    audit = last_audit("model_route.create")
    assert audit.actor == acme_admin and audit.metadata["changed"]["input_price"] == [None, "2.5"]


@pytest.mark.django_db
def test_a_tenant_admin_cannot_route_to_another_tenants_provider(alice, globex_world):
    response = alice.post(
        f"{API}/model-routes/", {"model": "m", "provider": globex_world["provider"].pk, "upstream_model": "u"}
    )

    assert response.status_code == 400 and "provider" in error_of(response)["fields"]
    assert not ModelRoute.objects.filter(model="m").exists()


@pytest.mark.django_db
def test_a_shared_route_needs_a_shared_provider(platform, acme_world):
    response = platform.post(
        f"{API}/model-routes/", {"model": "m", "provider": acme_world["provider"].pk, "upstream_model": "u"}
    )

    assert response.status_code == 400 and "provider" in error_of(response)["fields"]


@pytest.mark.django_db
def test_a_tenant_admin_cannot_create_or_change_shared_routes(alice, shared):
    route = shared["route"]
    payload = {"model": "m", "provider": shared["provider"].pk, "upstream_model": "u", "tenant": None}

    assert alice.post(f"{API}/model-routes/", payload).status_code == 403
    assert alice.get(f"{API}/model-routes/{route.pk}/").status_code == 200
    assert alice.patch(f"{API}/model-routes/{route.pk}/", {"weight": 5}).status_code == 403
    assert alice.delete(f"{API}/model-routes/{route.pk}/").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload", [{"weight": -1}, {"priority": 2**31}, {"input_price": "-1"}, {"output_price": "x"}]
)
def test_bad_numbers_are_refused(alice, acme_world, payload):
    response = alice.patch(f"{API}/model-routes/{acme_world['route'].pk}/", payload)

    assert response.status_code == 400 and next(iter(payload)) in error_of(response)["fields"]


@pytest.mark.django_db
def test_a_tenant_admin_changes_and_deletes_their_route_with_the_change_audited(alice, acme_world):
    route = acme_world["route"]

    assert (
        alice.patch(f"{API}/model-routes/{route.pk}/", {"priority": 3, "is_active": False}).status_code == 200
    )
    assert last_audit("model_route.update").metadata["changed"] == {
        "priority": [0, 3],
        "is_active": [True, False],
    }

    assert alice.delete(f"{API}/model-routes/{route.pk}/").status_code == 204
    assert not ModelRoute.objects.filter(pk=route.pk).exists()
