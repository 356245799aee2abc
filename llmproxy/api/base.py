"""The base of every REST API view: roles, tenant scoping, audit.

ScopedApi.get_queryset() applies llmproxy/api/scoping.py and cannot be
overridden (a subclass that tries fails at import): views describe their rows
in base_queryset() and the scope is added on top, so no view can forget it
(the PostHog `TeamAndOrgViewSetMixin` idea).

ScopedListApi, ScopedRetrieveApi and ScopedDetailApi hold the list, create,
read, update and delete that most views share, each write audited; a view
names its serializers and fields and fills in the hooks where its rules differ.
They explain themselves in comments, not docstrings: drf-spectacular would
publish a base's docstring as the description of every operation of its views.
"""

import re
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import audit_ip, audit_record
from keys.models import ApiKey
from llmproxy.api import scoping
from tenants.models import Tenant

# Values never written to the audit log, whatever the view: only that they changed.
SECRET_FIELDS = frozenset({"password", "api_key", "encrypted_api_key", "digest", "previous_digest", "token"})
REDACTED = "[REDACTED]"


class HasRole(permissions.BasePermission):
    """The caller's role is one the view takes for this method (read_roles or write_roles)."""

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            roles = view.read_roles
        else:
            roles = view.write_roles if view.write_roles is not None else view.read_roles
        return scoping.role_of(request.user) in roles


def _name_nested_serializers(view_cls):
    # drf-spectacular names schema components after serializer classes; every
    # view nests its own InputSerializer/OutputSerializer, so give each a
    # unique name: KeyListApi.OutputSerializer -> KeyListOutput.
    base = view_cls.__name__.removesuffix("Api")
    for attr, value in vars(view_cls).items():
        if isinstance(value, type) and issubclass(value, serializers.BaseSerializer):
            if "Meta" not in vars(value):
                inherited = getattr(value, "Meta", None)
                value.Meta = type("Meta", (inherited,) if inherited else (), {})
            if "ref_name" not in vars(value.Meta):
                value.Meta.ref_name = base + attr.removesuffix("Serializer")


def filtered(rows, values, **lookups):
    """``rows`` narrowed by each query parameter present in ``values``: lookups maps parameter to lookup."""
    for name, lookup in lookups.items():
        if name in values:
            rows = rows.filter(**{lookup: values[name]})
    return rows


def json_value(value):
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # 10 and 10.000000 are one value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def snapshot(obj, fields):
    """{field: JSON-safe value} of obj; foreign keys as ids."""
    values = {}
    for name in fields:
        field = obj._meta.get_field(name)
        values[name] = json_value(getattr(obj, field.attname))
    return values


def changes(before, after):
    """{field: [old, new]} of what differs, secrets redacted."""
    changed = {}
    for name, new in after.items():
        old = before.get(name)
        if old != new:
            changed[name] = [REDACTED, REDACTED] if name in SECRET_FIELDS else [old, new]
    return changed


class ApiView(APIView):
    read_roles = (scoping.ADMIN, scoping.TENANT_ADMIN)
    write_roles = None  # None: the same as read_roles
    permission_classes = (HasRole,)
    pagination_class = None  # list views name theirs (llmproxy/api/pagination.py)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _name_nested_serializers(cls)

    def dispatch(self, request, *args, **kwargs):
        # Audit rows written while serving this request (services included) carry its address.
        with audit_ip(request.META.get("REMOTE_ADDR")):
            return super().dispatch(request, *args, **kwargs)

    @property
    def role(self):
        return scoping.role_of(self.request.user)

    @property
    def is_platform_admin(self):
        return self.role == scoping.ADMIN

    def visible(self, model):
        return scoping.visible(model, self.request.user)

    def rows_of_key(self, rows, prefix, key_filter):
        """``rows`` of the API key with this prefix (key_filter(key id): the lookup); none if unseen."""
        # Resolved among the keys the caller can see, then matched on an indexed column.
        key_id = self.visible(ApiKey).filter(prefix=prefix).values_list("id", flat=True).first()
        return rows.filter(**key_filter(key_id)) if key_id is not None else rows.none()

    def paginated(self, queryset, serializer_class):
        """A page of ``queryset`` with this view's pagination_class (which the schema also documents)."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)

    def audit(self, verb, obj, changed=None, *, name=None):
        """One AuditLog row for a change made through the API: who, what, which object, before/after."""
        name = name or re.sub(r"(?<!^)(?=[A-Z])", "_", type(obj).__name__).lower()
        tenant = obj if isinstance(obj, Tenant) else getattr(obj, "tenant", None)
        audit_record(
            actor=self.request.user,
            action=f"{name}.{verb}",
            target=obj,
            tenant=tenant,
            metadata={"changed": changed or {}, "via": "api"},
        )


class ScopedApi(ApiView):
    model = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in vars(cls):
            raise TypeError(
                f"{cls.__name__} overrides get_queryset(), which applies the tenant scope: "
                "override base_queryset()"
            )

    def base_queryset(self):
        return self.model._default_manager.all()

    def get_queryset(self):
        return scoping.visible(self.model, self.request.user, self.base_queryset())

    def get_object(self):
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])

    def get_changeable_object(self):
        obj = self.get_object()
        if not scoping.may_change(obj, self.request.user):
            raise PermissionDenied("Only a platform admin can change this object.")
        return obj


def _document_inherited(view_cls, **operations):
    # The schema of the operations view_cls takes from its base, with its own
    # serializers; an operation the view writes itself carries its own @extend_schema.
    inherited = {
        method: schema
        for method, schema in operations.items()
        if method not in vars(view_cls) and method in view_cls.http_method_names
    }
    extend_schema_view(**inherited)(view_cls)


def _set_values(obj, values):
    for field, value in values.items():
        setattr(obj, field, value)


# GET a page of what the caller can see; POST one new object, audited as
# created. A view names model, OutputSerializer, InputSerializer, ordering and
# audited_fields; check_create() and apply_change() are its hooks.
class ScopedListApi(ScopedApi):
    ordering = ()
    audited_fields = ()  # the audit row holds their values (secrets redacted)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _document_inherited(
            cls,
            get=extend_schema(responses=cls.OutputSerializer(many=True)),
            post=extend_schema(request=cls.InputSerializer, responses={201: cls.OutputSerializer}),
        )

    def get(self, request):
        return self.paginated(self.get_queryset().order_by(*self.ordering), self.OutputSerializer)

    def post(self, request):
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        self.check_create(values)
        with transaction.atomic():
            obj = self.model()
            self.apply_change(obj, values)
            obj.full_clean()
            obj.save()
            self.audit("create", obj, changes({}, snapshot(obj, self.audited_fields)))
        return Response(self.OutputSerializer(obj).data, status=status.HTTP_201_CREATED)

    def check_create(self, values):
        """Refuse what the caller's role may not create, or fill in defaults (``values`` may be changed)."""

    def own_tenant_unless_shared(self, values, plural):
        """For models with shared rows: a tenant admin creates in their tenant, never a shared row."""
        if not self.is_platform_admin:
            if "tenant" in values and values["tenant"] is None:
                raise PermissionDenied(f"Only a platform admin can create shared {plural}.")
            values["tenant"] = self.request.user.tenant

    def apply_change(self, obj, values):
        """Set the validated values on the new object."""
        _set_values(obj, values)


# GET one object the caller can see (else 404).
class ScopedRetrieveApi(ScopedApi):
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if hasattr(cls, "OutputSerializer"):  # ScopedDetailApi, a base, has none
            _document_inherited(cls, get=extend_schema(responses=cls.OutputSerializer))

    def get(self, request, pk):
        return Response(self.OutputSerializer(self.get_object()).data)


# GET, PATCH and DELETE one object the caller can see; PATCH and DELETE only
# if they may change it. A PATCH locks the row, applies the values, and saves
# and audits only what changed (audited_fields, before and after). A view
# names model, OutputSerializer, InputSerializer and audited_fields;
# check_change(), apply_change() and check_delete() are its hooks, locked()
# and save_change() the rarer ones.
class ScopedDetailApi(ScopedRetrieveApi):
    audited_fields = ()  # compared before and after; the audit row holds what differs (secrets redacted)
    partial_update = True  # False: a PATCH gives every field of InputSerializer
    full_clean_before_save = True  # False: the serializer and check_change() are the whole validation

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _document_inherited(
            cls,
            patch=extend_schema(request=cls.InputSerializer, responses=cls.OutputSerializer),
            delete=extend_schema(responses={204: None}),
        )

    def patch(self, request, pk):
        obj = self.get_changeable_object()
        data = self.InputSerializer(
            obj, data=request.data, partial=self.partial_update, context={"request": request}
        )
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        self.check_change(obj, values)
        with transaction.atomic():
            obj = self.locked(obj)
            changed = self.save_change(obj, values)
            if changed:
                self.audit("update", obj, changed)
        return Response(self.OutputSerializer(obj).data)

    def delete(self, request, pk):
        obj = self.get_changeable_object()
        self.check_delete(obj)
        with transaction.atomic():
            # Recorded first, while the object has its id; the audit rows outlive it.
            self.audit("delete", obj, {})
            obj.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    def check_change(self, obj, values):
        """Refuse a change the caller's role may not make (before the row is locked)."""

    def check_delete(self, obj):
        """Refuse a delete the caller's role may not make."""

    def locked(self, obj):
        """``obj`` (found through the scope) read again, its row locked until the transaction ends."""
        return self.model._default_manager.select_for_update().get(pk=obj.pk)

    def apply_change(self, obj, values):
        """Set the validated values on the locked object."""
        _set_values(obj, values)

    def save_change(self, obj, values):
        """Apply ``values`` to the locked ``obj`` and save it if anything changed: {field: [old, new]}."""
        before = snapshot(obj, self.audited_fields)
        self.apply_change(obj, values)
        if self.full_clean_before_save:
            obj.full_clean()
        changed = changes(before, snapshot(obj, self.audited_fields))
        if changed:
            obj.save()
        return changed


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """An id in a payload, accepted only if the caller can see that object (else: does not exist)."""

    def __init__(self, model, **kwargs):
        self.model = model
        kwargs.setdefault("pk_field", serializers.IntegerField(min_value=1, max_value=2**63 - 1))
        if not kwargs.get("read_only"):
            kwargs["queryset"] = model._default_manager.none()  # replaced per request below
        super().__init__(**kwargs)

    def get_queryset(self):
        return scoping.visible(self.model, self.context["request"].user)
