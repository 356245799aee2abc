from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminURLFieldWidget

from llmproxy.admin_scoping import ModelNamesField, TenantScopedAdmin
from providers import breaker
from providers.models import ModelPolicy, ModelRoute, Provider


class ProviderForm(forms.ModelForm):
    base_url = forms.URLField(
        label="Base URL",
        max_length=500,
        required=False,
        assume_scheme="https",
        widget=AdminURLFieldWidget,
        help_text="What the provider's own SDK takes as its base URL, e.g. https://api.openai.com/v1.",
    )
    # Write-only: the stored credential is never sent back to the browser.
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted. Leave empty to keep the current one. "
        "An environment variable, when named, takes precedence.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored API key", required=False)

    class Meta:
        model = Provider
        fields = (
            "name",
            "kind",
            "base_url",
            "tenant",
            "is_active",
            "api_key_env",
            "api_version",
            "timeout_seconds",
            "connect_timeout_seconds",
            "first_byte_timeout_seconds",
            "extra_headers",
            "options",
        )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("api_key") and cleaned.get("clear_api_key"):
            self.add_error("clear_api_key", "Either give a new API key or remove the stored one.")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("api_key"):
            self.instance.set_api_key(self.cleaned_data["api_key"])
        elif self.cleaned_data.get("clear_api_key"):
            self.instance.set_api_key("")
        return super().save(commit)


@admin.register(Provider)
class ProviderAdmin(TenantScopedAdmin):
    has_shared_rows = True
    form = ProviderForm
    list_display = ("name", "kind", "base_url", "tenant", "credential", "is_active", "timeout_seconds")
    list_filter = ("kind", "is_active", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("name", "base_url")
    fieldsets = (
        (None, {"fields": ("name", "kind", "base_url", "tenant", "is_active")}),
        ("Credential", {"fields": ("credential", "api_key", "clear_api_key", "api_key_env", "api_version")}),
        (
            "Timeouts",
            {"fields": ("timeout_seconds", "connect_timeout_seconds", "first_byte_timeout_seconds")},
        ),
        ("More", {"fields": ("extra_headers", "options")}),
    )
    readonly_fields = ("credential",)

    def get_queryset(self, request):
        # Provider.__str__ names the tenant: route forms list providers by it.
        return super().get_queryset(request).select_related("tenant")

    @admin.display(description="stored API key")
    def credential(self, obj):
        return "set" if obj.encrypted_api_key else "not set"

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only view (a shared provider seen by a tenant admin): the
        # write-only inputs have nothing to show.
        hidden = {"api_key", "clear_api_key"}
        return [
            (name, {**opts, "fields": [f for f in opts["fields"] if f not in hidden]})
            for name, opts in fieldsets
        ]


@admin.register(ModelRoute)
class ModelRouteAdmin(TenantScopedAdmin):
    has_shared_rows = True
    list_display = (
        "model",
        "provider",
        "upstream_model",
        "priority",
        "weight",
        "input_price",
        "output_price",
        "tenant",
        "is_active",
        "circuit_breaker",
    )
    list_filter = ("is_active", "tenant")
    list_select_related = ("provider__tenant", "tenant")
    search_fields = ("model", "upstream_model", "provider__name")
    fieldsets = (
        (None, {"fields": ("model", "provider", "upstream_model", "tenant", "is_active")}),
        ("Routing", {"fields": ("priority", "weight")}),
        ("Prices (USD per million tokens)", {"fields": ("input_price", "output_price")}),
        ("Circuit breaker", {"fields": ("circuit_breaker",)}),
    )
    readonly_fields = ("circuit_breaker",)
    actions = ["reset_circuit_breakers"]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # One Redis round trip for the whole page rather than one per row.
        found = breaker.states([route.id for route in changelist.result_list])
        for route in changelist.result_list:
            route.breaker_state = found.get(route.id)
        return changelist

    @admin.display(description="circuit breaker")
    def circuit_breaker(self, obj):
        if obj.pk is None:
            return "-"
        state = obj.breaker_state if hasattr(obj, "breaker_state") else breaker.states([obj.pk])[obj.pk]
        return state.describe() if state is not None else "unknown (Redis does not answer)"

    @admin.action(description="Reset the circuit breaker of the selected routes", permissions=["change"])
    def reset_circuit_breakers(self, request, queryset):
        routes = [route for route in queryset if self.is_owned(request, route)]
        try:
            breaker.reset(route.id for route in routes)
        except breaker.REDIS_ERRORS as exc:
            self.message_user(
                request, f"Redis does not answer ({type(exc).__name__}); nothing reset.", messages.ERROR
            )
            return
        for route in routes:
            self.audit(request, "breaker_reset", route)
        skipped = len(queryset) - len(routes)
        note = f"; {skipped} shared routes left alone (only platform admins reset them)" if skipped else ""
        self.message_user(request, f"Reset {len(routes)} circuit breakers{note}.", messages.SUCCESS)


class ModelPolicyForm(forms.ModelForm):
    fallback_models = ModelNamesField(
        help_text="Comma-separated public models, tried in this order once every route of this one failed."
    )

    class Meta:
        model = ModelPolicy
        fields = ("model", "tenant", "strategy", "max_attempts", "deadline_seconds", "fallback_models")


@admin.register(ModelPolicy)
class ModelPolicyAdmin(TenantScopedAdmin):
    has_shared_rows = True
    form = ModelPolicyForm
    list_display = ("model", "strategy", "max_attempts", "deadline_seconds", "fallbacks", "tenant")
    list_filter = ("strategy", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("model",)

    @admin.display(description="fallback models")
    def fallbacks(self, obj):
        return ", ".join(obj.fallback_models) or "-"
