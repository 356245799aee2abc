from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import F

from audit.services import audit_record
from llmproxy.admin_scoping import ModelNamesField, TenantScopedAdmin, is_platform_admin
from tenants.models import Tenant, User


class TenantForm(forms.ModelForm):
    allowed_models = ModelNamesField(help_text="Public model names this tenant may use; empty means all.")

    class Meta:
        model = Tenant
        fields = (
            "slug",
            "name",
            "is_active",
            "allowed_models",
            "cache_ttl_seconds",
            "cache_skip_nondeterministic",
            "store_prompts",
            "retention_days",
            "redis_down_policy",
        )


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_field = "pk"
    form = TenantForm
    list_display = ("slug", "name", "is_active", "cache_ttl_seconds", "retention_days", "created_at")
    list_filter = ("is_active",)
    search_fields = ("slug", "name")
    fieldsets = (
        (None, {"fields": ("slug", "name", "is_active")}),
        ("Models", {"fields": ("allowed_models",)}),
        ("Response cache", {"fields": ("cache_ttl_seconds", "cache_skip_nondeterministic")}),
        ("Request limits", {"fields": ("max_input_tokens", "max_output_tokens", "allowed_parameters")}),
        ("Logs", {"fields": ("store_prompts", "retention_days")}),
        ("When Redis is down", {"fields": ("redis_down_policy",)}),
        ("Tenant-wide quotas", {"fields": ("quota_usage",)}),
    )
    actions = ("clear_response_cache",)

    @admin.action(description="Clear the response cache of the selected tenants")
    def clear_response_cache(self, request, queryset):
        # Keys include the generation: bumping it orphans every entry in every process.
        for tenant in queryset:
            Tenant.objects.filter(pk=tenant.pk).update(cache_generation=F("cache_generation") + 1)
            audit_record(
                actor=request.user,
                action="tenant.clear_cache",
                target=tenant,
                tenant=tenant,
                ip=request.META.get("REMOTE_ADDR"),
            )
        self.message_user(request, f"Cleared the response cache of {queryset.count()} tenant(s).")

    @admin.display(description="Limits, with their usage")
    def quota_usage(self, obj):
        from quotas.usage_display import limits_table

        if obj is None or obj.pk is None:
            return "-"
        return limits_table(obj.quota_limits.filter(scope="tenant").order_by("metric", "period"))

    def get_readonly_fields(self, request, obj=None):
        if is_platform_admin(request.user):
            return ("quota_usage",)
        # The slug names the tenant in commands and metrics; activation is the
        # platform's decision.
        return ("slug", "is_active", "quota_usage")

    def has_add_permission(self, request):
        return is_platform_admin(request.user)

    def has_delete_permission(self, request, obj=None):
        return is_platform_admin(request.user)


def _roles_for(user):
    if is_platform_admin(user):
        return User.Role.choices
    return [(value, label) for value, label in User.Role.choices if value != User.Role.ADMIN]


@admin.register(User)
class UserAdmin(TenantScopedAdmin, DjangoUserAdmin):
    list_display = ("username", "email", "role", "tenant", "is_active", "last_login")
    list_filter = ("role", "is_active", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("username", "first_name", "last_name", "email")
    # is_staff and is_superuser follow from the role (User.save); groups and
    # permissions are not used: the role decides what a user may do.
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("role", "tenant", "is_active")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "usable_password", "password1", "password2", "role", "tenant"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")
    filter_horizontal = ()

    def scope_queryset(self, qs, tenant_id):
        # A platform admin attached to a tenant stays out of that tenant admin's reach.
        return super().scope_queryset(qs, tenant_id).exclude(role=User.Role.ADMIN)

    def is_owned(self, request, obj):
        return super().is_owned(request, obj) and (
            is_platform_admin(request.user) or obj.role != User.Role.ADMIN
        )

    def is_visible(self, request, obj):
        return self.is_owned(request, obj)

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and obj.pk == request.user.pk and not is_platform_admin(request.user):
            # No promoting oneself, no locking oneself out.
            readonly += ("role", "is_active")
        return readonly

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "role":
            kwargs["choices"] = _roles_for(request.user)
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.pk == request.user.pk:
            return False
        return super().has_delete_permission(request, obj)

    def user_change_password(self, request, id, form_url=""):
        # Django's own view saves the password (no save_model): audit what it did.
        user = self.get_object(request, unquote(id))
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and user is not None:
            stored = User.objects.filter(pk=user.pk).values_list("password", flat=True).first()
            if stored != user.password:
                self.audit(request, "update", user, ["password"])
        return response

    def save_model(self, request, obj, form, change):
        # The role choices already refuse it; this holds if a form ever forgets.
        if obj.role == User.Role.ADMIN and not is_platform_admin(request.user):
            raise PermissionDenied
        super().save_model(request, obj, form, change)


from tenants import admin_guardrails  # noqa: E402, F401 - registers GuardrailAdmin
