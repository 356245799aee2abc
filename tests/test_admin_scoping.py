"""The admin, seen by globex's tenant admin (the outsider), acme's and the platform's.

Every admin model gets the same questions: can charlie (globex) list, open,
change, delete or pick acme's object? Each refusal is paired with the same
request made by someone allowed, so a test cannot pass because the request was
malformed.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditLog, RequestLog
from audit.services import audit_record
from keys.services import api_key_create
from llmproxy.admin_scoping import CappedCountPaginator
from providers.models import ModelRoute, Provider
from quotas.models import QuotaLimit, TokenUsageMetric
from tenants.models import Tenant, User

EDITABLE = ["tenant", "user", "api_key", "provider", "model_route", "quota_limit"]
READ_ONLY = ["audit_log", "request_log", "usage_metric"]
ALL_MODELS = EDITABLE + READ_ONLY


def _populate(tenant, user):
    slug = tenant.slug
    provider = Provider.objects.create(name=f"{slug}-mock", kind="mock", tenant=tenant)
    api_key, _ = api_key_create(tenant=tenant, name=f"{slug}-key", user=user)
    now = timezone.now()
    return {
        "tenant": tenant,
        "user": user,
        "api_key": api_key,
        "provider": provider,
        "model_route": ModelRoute.objects.create(
            model=f"{slug}-model", provider=provider, upstream_model="m", tenant=tenant
        ),
        "quota_limit": QuotaLimit.objects.create(
            tenant=tenant, scope="key", api_key=api_key, metric="requests", period="minute", limit=10
        ),
        "audit_log": audit_record(action="test.event", tenant=tenant, metadata={"who": slug}),
        "request_log": RequestLog.objects.create(
            created_at=now,
            request_id=f"req-{slug}",
            tenant=tenant,
            api_key=api_key,
            key_prefix=api_key.prefix,
            endpoint="chat.completions",
            model=f"{slug}-model",
            status=200,
        ),
        "usage_metric": TokenUsageMetric.objects.create(
            bucket=now.replace(minute=0, second=0, microsecond=0),
            tenant=tenant,
            api_key=api_key,
            model=f"{slug}-model",
            requests=1,
            input_tokens=3,
            output_tokens=5,
        ),
    }


@pytest.fixture
def world(acme, globex, acme_user):
    dave = User.objects.create_user("dave", password="pw-dave-123", role=User.Role.USER, tenant=globex)
    return {"acme": _populate(acme, acme_user), "globex": _populate(globex, dave)}


def _client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def charlie(globex_admin):
    return _client(globex_admin)


@pytest.fixture
def alice(acme_admin):
    return _client(acme_admin)


@pytest.fixture
def root(platform_admin):
    return _client(platform_admin)


def _url(obj, view, *args):
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def _listed(client, model_obj):
    response = client.get(_url(model_obj, "changelist"))
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def _change_payload(name, obj):
    """A valid change form POST for obj, with one visible change."""
    if name == "tenant":
        return {
            "slug": obj.slug,
            "name": "Renamed",
            "is_active": "on",
            "allowed_models": "",
            "cache_ttl_seconds": "0",
            "max_input_tokens": "0",
            "max_output_tokens": "0",
            "retention_days": "90",
            "redis_down_policy": "closed",
        }
    if name == "user":
        return {
            "username": obj.username,
            "first_name": "Renamed",
            "last_name": "",
            "email": "",
            "role": obj.role,
            "tenant": obj.tenant_id,
            "is_active": "on",
        }
    if name == "api_key":
        return {
            "name": "Renamed",
            "user": obj.user_id or "",
            "allowed_models": "",
            "expires_at_0": "",
            "expires_at_1": "",
        }
    if name == "provider":
        return {
            "name": "renamed",
            "kind": "mock",
            "base_url": "",
            "tenant": obj.tenant_id or "",
            "is_active": "on",
            "api_key": "",
            "api_key_env": "",
            "api_version": "",
            "timeout_seconds": "60",
            "connect_timeout_seconds": "5",
            "extra_headers": "{}",
            "options": "{}",
            # The browser posts these hidden inputs for fields with a callable default.
            "initial-extra_headers": "{}",
            "initial-options": "{}",
        }
    if name == "model_route":
        return {
            "model": "renamed",
            "provider": obj.provider_id,
            "upstream_model": "m",
            "tenant": obj.tenant_id or "",
            "is_active": "on",
            "priority": "0",
            "weight": "1",
            "input_price": "0",
            "output_price": "0",
        }
    if name == "quota_limit":
        return {
            "tenant": obj.tenant_id,
            "scope": "key",
            "user": "",
            "api_key": obj.api_key_id,
            "metric": "requests",
            "period": "minute",
            "limit": "999",
        }
    raise AssertionError(name)


CHANGED_FIELD = {
    "tenant": "name",
    "user": "first_name",
    "api_key": "name",
    "provider": "name",
    "model_route": "model",
    "quota_limit": "limit",
}


def _changed_value(name, obj):
    obj.refresh_from_db()
    return getattr(obj, CHANGED_FIELD[name])


# --- listing ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_a_tenant_admin_lists_only_their_tenants_objects(name, world, charlie):
    listed = _listed(charlie, world["acme"][name])
    assert world["acme"][name].pk not in listed
    assert world["globex"][name].pk in listed


@pytest.mark.parametrize("name", ALL_MODELS)
def test_a_platform_admin_lists_every_tenants_objects(name, world, root):
    listed = _listed(root, world["acme"][name])
    assert {world["acme"][name].pk, world["globex"][name].pk} <= listed


def test_a_tenant_admin_sees_no_platform_admin_attached_to_their_tenant(world, globex, charlie):
    staff = User.objects.create_user("ops", password="pw-ops-12345", role=User.Role.ADMIN, tenant=globex)
    assert staff.pk not in _listed(charlie, staff)
    assert charlie.get(_url(staff, "change", staff.pk)).status_code == 302


def test_a_tenant_admin_finds_nothing_of_another_tenant_by_search_or_filter(world, charlie):
    acme_key = world["acme"]["api_key"]
    response = charlie.get(_url(acme_key, "changelist"), {"q": acme_key.prefix})
    assert list(response.context["cl"].result_list) == []
    response = charlie.get(_url(acme_key, "changelist"), {"tenant__id__exact": acme_key.tenant_id})
    assert acme_key.pk not in {k.pk for k in response.context["cl"].result_list}


def test_a_tenant_admin_gets_no_filter_listing_other_tenants(world, charlie, root):
    url = _url(world["acme"]["api_key"], "changelist")
    assert b"acme" not in charlie.get(url).content
    assert b"acme" in root.get(url).content


# --- opening, changing, deleting -----------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_an_outsider_cannot_open_another_tenants_object(name, world, charlie, root):
    obj = world["acme"][name]
    response = charlie.get(_url(obj, "change", obj.pk))
    assert response.status_code in (302, 404)
    if response.status_code == 302:
        assert response["Location"] == reverse("admin:index")
    assert root.get(_url(obj, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("name", EDITABLE)
def test_an_outsider_cannot_change_another_tenants_object(name, world, charlie, alice):
    obj = world["acme"][name]
    before = _changed_value(name, obj)
    payload = _change_payload(name, obj)

    response = charlie.post(_url(obj, "change", obj.pk), payload)
    assert response.status_code in (302, 403, 404)
    assert _changed_value(name, obj) == before

    # The same POST from acme's own admin goes through: the refusal above is scoping.
    response = alice.post(_url(obj, "change", obj.pk), payload)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert _changed_value(name, obj) != before


@pytest.mark.parametrize("name", [n for n in EDITABLE if n != "tenant"])
def test_an_outsider_cannot_delete_another_tenants_object(name, world, charlie, alice):
    obj = world["acme"][name]
    model = type(obj)
    charlie.post(_url(obj, "delete", obj.pk), {"post": "yes"})
    charlie.post(
        _url(obj, "changelist"), {"action": "delete_selected", "post": "yes", "_selected_action": [obj.pk]}
    )
    assert model.objects.filter(pk=obj.pk).exists()

    alice.post(_url(obj, "delete", obj.pk), {"post": "yes"})
    assert not model.objects.filter(pk=obj.pk).exists()


def test_a_tenant_admin_can_neither_delete_nor_create_a_tenant(world, alice, root):
    acme = world["acme"]["tenant"]
    alice.post(_url(acme, "delete", acme.pk), {"post": "yes"})
    assert Tenant.objects.filter(pk=acme.pk).exists()

    assert alice.get(reverse("admin:tenants_tenant_add")).status_code == 403
    payload = {**_change_payload("tenant", acme), "slug": "initech"}
    assert alice.post(reverse("admin:tenants_tenant_add"), payload).status_code == 403
    assert not Tenant.objects.filter(slug="initech").exists()

    assert root.post(reverse("admin:tenants_tenant_add"), payload).status_code == 302
    assert Tenant.objects.filter(slug="initech").exists()


def test_a_tenant_admin_edits_their_tenant_but_not_its_slug_or_active_flag(world, alice):
    acme = world["acme"]["tenant"]
    payload = {**_change_payload("tenant", acme), "slug": "hijacked", "is_active": "", "retention_days": "7"}
    assert alice.post(_url(acme, "change", acme.pk), payload).status_code == 302
    acme.refresh_from_db()
    assert (acme.slug, acme.is_active, acme.retention_days) == ("acme", True, 7)


@pytest.mark.parametrize("name", READ_ONLY)
def test_nobody_adds_changes_or_deletes_logs_and_metrics(name, world, root):
    obj = world["acme"][name]
    assert root.get(_url(obj, "change", obj.pk)).status_code == 200  # readable
    assert root.get(_url(obj, "add")).status_code == 403
    assert root.post(_url(obj, "change", obj.pk), {}).status_code == 403
    assert root.post(_url(obj, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()


# --- shared providers and routes ---------------------------------------------------------


@pytest.mark.parametrize("name", ["provider", "model_route"])
def test_a_tenant_admin_reads_shared_rows_but_only_a_platform_admin_changes_them(name, world, alice, root):
    shared_provider = Provider.objects.create(name="shared-mock", kind="mock")
    shared = (
        shared_provider
        if name == "provider"
        else ModelRoute.objects.create(model="shared-model", provider=shared_provider, upstream_model="m")
    )
    assert shared.pk in _listed(alice, shared)
    assert alice.get(_url(shared, "change", shared.pk)).status_code == 200
    before = _changed_value(name, shared)
    payload = _change_payload(name, shared)
    assert alice.post(_url(shared, "change", shared.pk), payload).status_code == 403
    assert alice.post(_url(shared, "delete", shared.pk), {"post": "yes"}).status_code == 403
    assert _changed_value(name, shared) == before

    assert root.post(_url(shared, "change", shared.pk), payload).status_code == 302
    assert _changed_value(name, shared) != before


# --- picking: foreign-key choices and autocomplete -------------------------------------------


def _choices(client, url, field):
    response = client.get(url)
    assert response.status_code == 200
    return set(response.context["adminform"].form.fields[field].queryset.values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("add_url", "field", "target"),
    [
        ("admin:keys_apikey_add", "user", "user"),
        ("admin:keys_apikey_add", "tenant", "tenant"),
        ("admin:quotas_quotalimit_add", "user", "user"),
        ("admin:quotas_quotalimit_add", "api_key", "api_key"),
        ("admin:providers_modelroute_add", "provider", "provider"),
        ("admin:providers_provider_add", "tenant", "tenant"),
        ("admin:tenants_user_add", "tenant", "tenant"),
    ],
)
def test_an_outsider_cannot_pick_another_tenants_object(add_url, field, target, world, charlie, root):
    assert world["acme"][target].pk not in _choices(charlie, reverse(add_url), field)
    assert world["globex"][target].pk in _choices(charlie, reverse(add_url), field)
    assert world["acme"][target].pk in _choices(root, reverse(add_url), field)


@pytest.mark.parametrize(
    ("app_label", "model_name", "field", "target"),
    [
        ("quotas", "quotalimit", "api_key", "api_key"),
        ("quotas", "quotalimit", "user", "user"),
        ("keys", "apikey", "user", "user"),
    ],
)
def test_autocomplete_offers_an_outsider_nothing_of_another_tenant(
    app_label, model_name, field, target, world, charlie, root
):
    params = {"app_label": app_label, "model_name": model_name, "field_name": field, "term": ""}

    def ids(client):
        response = client.get(reverse("admin:autocomplete"), params)
        assert response.status_code == 200
        return {int(row["id"]) for row in response.json()["results"]}

    assert world["acme"][target].pk not in ids(charlie)
    assert world["globex"][target].pk in ids(charlie)
    assert world["acme"][target].pk in ids(root)


def test_a_raw_id_lookup_popup_lists_no_other_tenants_keys(world, charlie):
    response = charlie.get(reverse("admin:keys_apikey_changelist"), {"_to_field": "id", "_popup": "1"})
    assert world["acme"]["api_key"].pk not in {k.pk for k in response.context["cl"].result_list}


def test_a_posted_id_of_another_tenants_object_is_refused(world, charlie):
    acme_key = world["acme"]["api_key"]
    payload = {
        "scope": "key",
        "api_key": acme_key.pk,
        "user": "",
        "metric": "tokens",
        "period": "day",
        "limit": "5",
    }
    response = charlie.post(reverse("admin:quotas_quotalimit_add"), payload)
    assert response.status_code == 200
    assert "api_key" in response.context["adminform"].form.errors
    assert not QuotaLimit.objects.filter(api_key=acme_key, metric="tokens").exists()


def test_what_a_tenant_admin_creates_belongs_to_their_tenant(world, charlie, globex):
    acme = world["acme"]["tenant"]
    payload = {
        **_change_payload("provider", world["globex"]["provider"]),
        "name": "sneaky",
        "tenant": acme.pk,
    }
    assert charlie.post(reverse("admin:providers_provider_add"), payload).status_code == 302
    assert Provider.objects.get(name="sneaky").tenant == globex


# --- roles ------------------------------------------------------------------------------


def _new_user_payload(username, role, tenant):
    return {
        "username": username,
        "usable_password": "true",
        "password1": "a-Long-pass-phrase-42",
        "password2": "a-Long-pass-phrase-42",
        "role": role,
        "tenant": tenant.pk,
    }


def test_a_tenant_admin_cannot_create_a_platform_admin(world, charlie, globex):
    response = charlie.post(reverse("admin:tenants_user_add"), _new_user_payload("mallory", "admin", globex))
    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    assert not User.objects.filter(username="mallory").exists()


def test_a_tenant_admin_creates_users_and_tenant_admins_in_their_tenant_only(world, charlie, globex):
    acme = world["acme"]["tenant"]
    response = charlie.post(
        reverse("admin:tenants_user_add"), _new_user_payload("erin", "tenant_admin", acme)
    )
    assert response.status_code == 302
    erin = User.objects.get(username="erin")
    assert (erin.role, erin.tenant, erin.is_staff, erin.is_superuser) == ("tenant_admin", globex, True, False)


def test_a_tenant_admin_cannot_raise_a_users_role_to_admin(world, charlie):
    dave = world["globex"]["user"]
    payload = {**_change_payload("user", dave), "role": "admin"}
    response = charlie.post(_url(dave, "change", dave.pk), payload)
    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    dave.refresh_from_db()
    assert (dave.role, dave.is_staff) == ("user", False)


def test_a_tenant_admin_cannot_change_their_own_role(world, charlie, globex_admin):
    payload = {**_change_payload("user", globex_admin), "role": "user", "first_name": "Charlie"}
    assert charlie.post(_url(globex_admin, "change", globex_admin.pk), payload).status_code == 302
    globex_admin.refresh_from_db()
    assert (globex_admin.first_name, globex_admin.role) == ("Charlie", "tenant_admin")


def test_a_platform_admin_can_make_a_platform_admin(world, root):
    dave = world["globex"]["user"]
    payload = {**_change_payload("user", dave), "role": "admin"}
    assert root.post(_url(dave, "change", dave.pk), payload).status_code == 302
    dave.refresh_from_db()
    assert (dave.role, dave.is_staff, dave.is_superuser) == ("admin", True, True)


def test_a_user_with_role_user_cannot_log_into_the_admin(acme_user):
    client = Client()
    response = client.post(
        reverse("admin:login"), {"username": "bob", "password": "pw-bob-123", "next": "/admin/"}
    )
    assert response.status_code == 200  # the form again, with an error
    assert response.context["form"].errors
    client.force_login(acme_user)  # even with a session, the admin refuses
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_tenant_admin_logs_in_and_sees_the_models_they_manage(acme_admin):
    client = Client()
    response = client.post(
        reverse("admin:login"), {"username": "alice", "password": "pw-alice-123", "next": "/admin/"}
    )
    assert response.status_code == 302
    models = {m["object_name"] for app in client.get("/admin/").context["app_list"] for m in app["models"]}
    assert models == {
        "Tenant",
        "User",
        "ApiKey",
        "Provider",
        "ModelRoute",
        "ModelPolicy",
        "Guardrail",
        "QuotaLimit",
        "AuditLog",
        "RequestLog",
        "TokenUsageMetric",
    }


# --- providers' credentials ----------------------------------------------------------------


def test_a_provider_credential_is_write_only(world, alice):
    provider = world["acme"]["provider"]
    payload = {**_change_payload("provider", provider), "api_key": "sk-very-secret-value"}
    assert alice.post(_url(provider, "change", provider.pk), payload).status_code == 302
    provider.refresh_from_db()
    assert provider.get_api_key() == "sk-very-secret-value"

    page = alice.get(_url(provider, "change", provider.pk)).content.decode()
    assert "sk-very-secret-value" not in page
    assert provider.encrypted_api_key not in page
    assert "set" in page and 'type="password"' in page

    # Saving again with the field empty keeps the credential.
    assert (
        alice.post(_url(provider, "change", provider.pk), _change_payload("provider", provider)).status_code
        == 302
    )
    provider.refresh_from_db()
    assert provider.get_api_key() == "sk-very-secret-value"


# --- audit ------------------------------------------------------------------------------


def test_admin_changes_are_audited_with_field_names_and_never_values(world, alice, acme_admin):
    provider = world["acme"]["provider"]
    payload = {**_change_payload("provider", provider), "api_key": "sk-audit-secret"}
    alice.post(_url(provider, "change", provider.pk), payload, REMOTE_ADDR="203.0.113.9")

    row = AuditLog.objects.get(action="provider.update")
    assert (row.actor, row.tenant, row.target_id, row.ip) == (
        acme_admin,
        provider.tenant,
        str(provider.pk),
        "203.0.113.9",
    )
    assert sorted(row.metadata["changed"]) == ["api_key", "name"]
    assert "sk-audit-secret" not in str(row.metadata)


@pytest.mark.parametrize("name", ["user", "provider", "model_route", "quota_limit"])
def test_admin_creates_and_deletes_are_audited(name, world, alice):
    obj = world["acme"][name]
    alice.post(_url(obj, "delete", obj.pk), {"post": "yes"})
    row = AuditLog.objects.get(action=f"{name}.delete")
    assert (row.target_id, row.tenant) == (str(obj.pk), world["acme"]["tenant"])


def test_a_platform_admin_creating_a_tenant_is_audited(root, platform_admin):
    payload = {
        "slug": "initech",
        "name": "Initech",
        "is_active": "on",
        "allowed_models": "gpt-4o, gpt-4o",
        "cache_ttl_seconds": "0",
        "max_input_tokens": "0",
        "max_output_tokens": "0",
        "retention_days": "30",
        "redis_down_policy": "closed",
    }
    assert root.post(reverse("admin:tenants_tenant_add"), payload).status_code == 302
    initech = Tenant.objects.get(slug="initech")
    assert initech.allowed_models == ["gpt-4o"]
    row = AuditLog.objects.get(action="tenant.create")
    assert (row.actor, row.tenant) == (platform_admin, initech)
    assert "slug" in row.metadata["changed"]


# --- big tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", READ_ONLY)
def test_log_lists_cost_the_same_queries_for_many_rows(name, world, root, django_assert_max_num_queries):
    obj = world["acme"][name]
    url = _url(obj, "changelist")
    root.get(url)  # warm up sessions and content types
    with CaptureQueriesContext(connection) as few:
        root.get(url)
    tenant = world["acme"]["tenant"]
    for i in range(20):
        if name == "request_log":
            RequestLog.objects.create(
                created_at=timezone.now(),
                request_id=f"r{i}",
                tenant=tenant,
                api_key=world["acme"]["api_key"],
                endpoint="e",
                status=200,
            )
        elif name == "usage_metric":
            TokenUsageMetric.objects.create(
                bucket=timezone.now() - timedelta(hours=i + 1),
                tenant=tenant,
                api_key=world["acme"]["api_key"],
                model="m",
                cost=Decimal(1),
            )
        else:
            audit_record(action="test.more", tenant=tenant, target=world["acme"]["api_key"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        root.get(url)


def test_an_outsider_cannot_set_the_password_of_another_tenants_user(world, charlie, alice, acme_admin):
    bob = world["acme"]["user"]
    url = reverse("admin:auth_user_password_change", args=[bob.pk])
    payload = {"password1": "n3w-Pass-phrase!", "password2": "n3w-Pass-phrase!", "usable_password": "true"}
    assert charlie.post(url, payload).status_code == 404
    bob.refresh_from_db()
    assert not bob.check_password("n3w-Pass-phrase!")

    assert alice.post(url, payload).status_code == 302
    bob.refresh_from_db()
    assert bob.check_password("n3w-Pass-phrase!")
    row = AuditLog.objects.get(action="user.update")
    assert (row.actor, row.target_id, row.metadata) == (acme_admin, str(bob.pk), {"changed": ["password"]})


def test_a_log_list_counts_no_further_than_its_cap(world, root, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 3)
    tenant = world["acme"]["tenant"]
    for i in range(5):
        RequestLog.objects.create(
            created_at=timezone.now(), request_id=f"c{i}", tenant=tenant, endpoint="e", status=200
        )
    response = root.get(reverse("admin:audit_requestlog_changelist"))
    assert response.context["cl"].result_count == 3


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_page_of_the_admin_renders_for_a_tenant_admin_and_a_platform_admin(name, world, alice, root):
    obj = world["acme"][name]
    for client in (alice, root):
        assert client.get(_url(obj, "changelist")).status_code == 200
        assert client.get(_url(obj, "change", obj.pk)).status_code == 200
        assert client.get(_url(obj, "history", obj.pk)).status_code == 200
    if name in EDITABLE and name != "tenant":
        assert alice.get(_url(obj, "add")).status_code == 200
        assert root.get(_url(obj, "add")).status_code == 200
        assert b"Are you sure" in alice.get(_url(obj, "delete", obj.pk)).content
