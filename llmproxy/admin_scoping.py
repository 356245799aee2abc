"""The base of every admin class: tenant scoping, role-based permissions, audit.

Tenant admins are staff without Django model permissions; what they may do
follows from their role and tenant alone, decided here once so that an admin
class cannot forget it (the PostHog `TeamAndOrgViewSetMixin` idea):

- querysets hold their tenant's objects only (plus shared ones, read-only,
  where the model has them);
- every foreign-key picker (select, autocomplete, raw id popup) offers what the
  related model's admin would list to this user;
- what they create belongs to their tenant whatever the POST says;
- every add, change and delete is written to the audit log.
"""

import re

from django import forms
from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.utils.functional import cached_property

from audit.services import audit_record
from tenants.models import User


def is_platform_admin(user):
    return user.is_authenticated and user.is_platform_admin


def managed_tenant_id(user):
    """The tenant a tenant admin manages, or None for anyone else."""
    if user.is_authenticated and user.is_active and user.role == User.Role.TENANT_ADMIN:
        return user.tenant_id
    return None


def can_use_admin(user):
    return is_platform_admin(user) or managed_tenant_id(user) is not None


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class TenantScopedAdmin(admin.ModelAdmin):
    # The model's path to its tenant; "pk" for the Tenant model itself.
    tenant_field = "tenant"
    # Rows with no tenant are shared by all tenants: tenant admins see them
    # but only platform admins change them (providers, model routes).
    has_shared_rows = False

    # --- scoping ---------------------------------------------------------

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if is_platform_admin(request.user):
            return qs
        tenant_id = managed_tenant_id(request.user)
        if tenant_id is None:
            return qs.none()
        return self.scope_queryset(qs, tenant_id)

    def scope_queryset(self, qs, tenant_id):
        own = qs.filter(**{self.tenant_field: tenant_id})
        if self.has_shared_rows:
            return own | qs.filter(**{f"{self.tenant_field}__isnull": True})
        return own

    def tenant_id_of(self, obj):
        return obj.pk if self.tenant_field == "pk" else getattr(obj, f"{self.tenant_field}_id")

    def is_visible(self, request, obj):
        if is_platform_admin(request.user):
            return True
        tenant_id = managed_tenant_id(request.user)
        owner = self.tenant_id_of(obj)
        return tenant_id is not None and (owner == tenant_id or (self.has_shared_rows and owner is None))

    def is_owned(self, request, obj):
        if is_platform_admin(request.user):
            return True
        tenant_id = managed_tenant_id(request.user)
        return tenant_id is not None and self.tenant_id_of(obj) == tenant_id

    def get_field_queryset(self, db, db_field, request):
        # Every FK/M2M choice list offers what the related model's admin lists
        # to this user, so pickers are scoped exactly like changelists.
        related = db_field.remote_field.model
        try:
            related_admin = self.admin_site.get_model_admin(related)
        except NotRegistered:
            return None if is_platform_admin(request.user) else related._default_manager.none()
        return related_admin.get_queryset(request).using(db)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == self.tenant_field and not is_platform_admin(request.user):
            # Shown for information; a disabled field ignores whatever is POSTed.
            kwargs["disabled"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        tenant_id = managed_tenant_id(request.user)
        if obj is not None or tenant_id is None or self.tenant_field == "pk":
            return form
        tenant_attname = f"{self.tenant_field}_id"

        class TenantForm(form):
            # A new object starts in the tenant admin's tenant so that model
            # validation (clean(), unique constraints) sees the real tenant.
            def __init__(self, *args, **kw):
                if kw.get("instance") is None:
                    kw["instance"] = self._meta.model(**{tenant_attname: tenant_id})
                super().__init__(*args, **kw)

        TenantForm.__name__ = form.__name__
        return TenantForm

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if is_platform_admin(request.user):
            return filters
        # A tenant filter would list every tenant's slug.
        return [f for f in filters if (f[0] if isinstance(f, tuple | list) else f) != self.tenant_field]

    # --- permissions by role, not Django's permission tables ---------------

    def has_module_permission(self, request):
        return can_use_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return can_use_admin(request.user) and (obj is None or self.is_visible(request, obj))

    def has_add_permission(self, request):
        return can_use_admin(request.user)

    def has_change_permission(self, request, obj=None):
        return can_use_admin(request.user) and (obj is None or self.is_owned(request, obj))

    def has_delete_permission(self, request, obj=None):
        return can_use_admin(request.user) and (obj is None or self.is_owned(request, obj))

    # --- writes: forced tenant and audit -----------------------------------

    @cached_property
    def audit_name(self):
        return _snake(self.model.__name__)

    def save_model(self, request, obj, form, change):
        if change and not self.is_owned(request, obj):
            raise PermissionDenied
        if not change:
            self.force_tenant(request, obj)
        super().save_model(request, obj, form, change)
        changed = list(form.changed_data)
        if change and not changed:
            return
        self.audit(request, "update" if change else "create", obj, changed)

    def force_tenant(self, request, obj):
        # The form already pins it (disabled field); this holds if a form ever forgets.
        if not is_platform_admin(request.user) and self.tenant_field != "pk":
            setattr(obj, f"{self.tenant_field}_id", managed_tenant_id(request.user))

    def delete_model(self, request, obj):
        # Recorded first: after the delete the object has no primary key.
        self.audit(request, "delete", obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic(using=queryset.db):
            for obj in queryset:
                self.audit(request, "delete", obj)
            super().delete_queryset(request, queryset)

    def audit_tenant(self, obj):
        return obj if self.tenant_field == "pk" else getattr(obj, self.tenant_field)

    def audit(self, request, verb, obj, changed=None):
        # Field names only: values may be secrets (passwords, credentials).
        metadata = {"changed": changed} if changed is not None else {}
        audit_record(
            actor=request.user,
            action=f"{self.audit_name}.{verb}",
            target=obj,
            tenant=self.audit_tenant(obj),
            metadata=metadata,
            ip=request.META.get("REMOTE_ADDR"),
        )


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows: COUNT(*) over millions of log rows is what makes
    big admin lists slow. Past the cap, narrow the list with filters or dates."""

    CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list.order_by()[: self.CAP].count()


class ReadOnlyScopedAdmin(TenantScopedAdmin):
    """Logs and metrics: written by the proxy, read (scoped) in the admin."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ModelNamesField(forms.CharField):
    """A list of public model names, edited as comma-separated text."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Comma-separated public model names; empty means all.")
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(value)
        return value

    def to_python(self, value):
        text = super().to_python(value)
        names = [name.strip() for name in text.split(",")]
        return list(dict.fromkeys(name for name in names if name))

    def has_changed(self, initial, data):
        return (initial or []) != self.to_python(data)
