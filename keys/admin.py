from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from keys.models import ApiKey
from keys.services import api_key_create, api_key_revoke, api_key_rotate
from llmproxy.admin_scoping import ModelNamesField, TenantScopedAdmin
from quotas.applicable import limits_for_key

ROTATION_GRACE = timedelta(hours=24)


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "active"), ("revoked", "revoked"), ("expired", "expired"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


class ApiKeyForm(forms.ModelForm):
    allowed_models = ModelNamesField(help_text="Public model names this key may use; empty means all.")

    class Meta:
        model = ApiKey
        fields = ("name", "tenant", "user", "allowed_models", "expires_at")

    def clean(self):
        cleaned = super().clean()
        tenant = cleaned.get("tenant") or getattr(self.instance, "tenant", None)
        user = cleaned.get("user")
        if user is not None and tenant is not None and user.tenant_id != tenant.pk:
            self.add_error("user", "This user belongs to another tenant.")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    form = ApiKeyForm
    list_display = ("prefix", "name", "tenant", "user", "status", "expires_at", "last_used_at", "created_at")
    list_filter = ("tenant", StatusFilter)
    list_select_related = ("tenant", "user")
    search_fields = ("=prefix", "name")
    autocomplete_fields = ("user",)
    actions = ("revoke_keys", "rotate_keys")
    add_fieldsets = ((None, {"fields": ("name", "tenant", "user", "allowed_models", "expires_at")}),)
    # Never the digests: they identify the secret as well as the key does.
    fieldsets = (
        (None, {"fields": ("prefix", "name", "tenant", "user", "status")}),
        ("Limits", {"fields": ("allowed_models", "expires_at")}),
        ("Quotas", {"fields": ("quota_usage",)}),
        (
            "History",
            {"fields": ("created_at", "last_used_at", "rotated_at", "previous_valid_until", "revoked_at")},
        ),
    )
    readonly_fields = (
        "prefix",
        "tenant",
        "status",
        "created_at",
        "last_used_at",
        "rotated_at",
        "previous_valid_until",
        "revoked_at",
        "quota_usage",
    )

    @admin.display(description="Limits that apply, with their usage")
    def quota_usage(self, obj):
        from quotas.models import QuotaLimit
        from quotas.usage_display import limits_table

        ids = [limit.id for limit in limits_for_key(obj)]
        return limits_table(QuotaLimit.objects.filter(id__in=ids).order_by("scope", "metric", "period"))

    @admin.display(description="status")
    def status(self, obj):
        if obj.is_revoked:
            return "revoked"
        return "expired" if obj.is_expired() else "active"

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        # A key's tenant is chosen once, when it is issued.
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        # Issued by the service (which writes the audit row); the plain key
        # lives only in this request and is shown by response_add.
        self.force_tenant(request, obj)
        api_key, plain = api_key_create(
            tenant=obj.tenant,
            name=obj.name,
            user=obj.user,
            allowed_models=obj.allowed_models,
            expires_at=obj.expires_at,
            actor=request.user,
        )
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(api_key, field.attname))
        obj._state.adding = False
        obj._state.db = api_key._state.db
        request.issued_api_keys = [(obj, plain)]

    def response_add(self, request, obj, post_url_continue=None):
        # Also in a popup: closing it at once would lose the only copy of the key.
        return self.issued_keys_response(request, request.issued_api_keys, "API key created")

    def issued_keys_response(self, request, issued, title):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "issued": issued,
            "is_popup": IS_POPUP_VAR in request.GET or IS_POPUP_VAR in request.POST,
        }
        response = TemplateResponse(request, "admin/keys/apikey/issued_keys.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        revoked = sum(api_key_revoke(api_key=key, actor=request.user) for key in queryset)
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)

    @admin.action(description="Rotate selected API keys (old secret valid 24 hours)", permissions=["change"])
    def rotate_keys(self, request, queryset):
        now = timezone.now()
        usable = [key for key in queryset if not key.is_revoked and not key.is_expired(now)]
        if not usable:
            self.message_user(request, "Revoked or expired keys cannot be rotated.", messages.WARNING)
            return None
        issued = [
            (key, api_key_rotate(api_key=key, grace=ROTATION_GRACE, actor=request.user)) for key in usable
        ]
        return self.issued_keys_response(request, issued, "API key(s) rotated")
