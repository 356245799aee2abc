"""The base of every REST API view: roles, tenant scoping, audit.

ScopedApi.get_queryset() applies llmproxy/api/scoping.py and cannot be
overridden (a subclass that tries fails at import): views describe their rows
in base_queryset() and the scope is added on top, so no view can forget it
(the PostHog `TeamAndOrgViewSetMixin` idea).
"""

import re
from datetime import date, datetime
from decimal import Decimal

from django.shortcuts import get_object_or_404
from rest_framework import permissions, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.views import APIView

from audit.services import audit_ip, audit_record
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
