"""Guardrails in the admin: each tenant admin sees and edits their own, with what each did lately."""

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.db.models import Q, Sum
from django.utils import timezone

from llmproxy.admin_scoping import ModelNamesField, TenantScopedAdmin
from tenants.models import Guardrail

HIT_DAYS = 7
_OUTCOMES = (
    # action, done, in shadow mode
    (Guardrail.Action.BLOCK, "blocked", "would block"),
    (Guardrail.Action.MASK, "masked", "would mask"),
    (Guardrail.Action.FLAG, "flagged", "would flag"),
)


class WordsField(forms.CharField):
    """A word list, edited one word or phrase per line."""

    widget = forms.Textarea(attrs={"rows": 4})

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return "\n".join(value)
        return value

    def to_python(self, value):
        lines = (line.strip() for line in super().to_python(value).splitlines())
        return list(dict.fromkeys(line for line in lines if line))

    def has_changed(self, initial, data):
        return (initial or []) != self.to_python(data)


class GuardrailForm(forms.ModelForm):
    words = WordsField(help_text="For the word-list detector: one word or phrase a line, any case.")
    models = ModelNamesField(help_text="Public model names this rule applies to; empty means all.")

    class Meta:
        model = Guardrail
        fields = (
            "name",
            "tenant",
            "is_active",
            "detector",
            "pattern",
            "words",
            "direction",
            "action",
            "shadow",
            "api_keys",
            "models",
        )

    def clean(self):
        cleaned = super().clean()
        tenant = cleaned.get("tenant")
        tenant_id = tenant.pk if tenant is not None else self.instance.tenant_id
        keys = cleaned.get("api_keys") or ()
        if tenant_id is not None and any(key.tenant_id != tenant_id for key in keys):
            self.add_error("api_keys", "Pick keys of the guardrail's own tenant.")
        return cleaned


@admin.register(Guardrail)
class GuardrailAdmin(TenantScopedAdmin):
    form = GuardrailForm
    list_display = ("name", "tenant", "detector", "direction", "action", "shadow", "is_active", "recent_hits")
    list_filter = ("tenant", "detector", "action", "shadow", "is_active")
    list_select_related = ("tenant",)
    search_fields = ("name",)
    filter_horizontal = ("api_keys",)
    readonly_fields = ("recent_hits", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "tenant", "is_active")}),
        ("What to look for", {"fields": ("detector", "pattern", "words")}),
        (
            "What to do",
            {
                "fields": ("direction", "action", "shadow"),
                "description": "Masked text becomes [REDACTED:DETECTOR]; a blocked request gets 400 "
                "guardrail_blocked, a blocked stream a final error event. Shadow mode changes "
                "nothing and counts what the rule would have done.",
            },
        ),
        ("Scope", {"fields": ("api_keys", "models"), "description": "Empty means every key or model."}),
        ("Activity", {"fields": ("recent_hits", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        # Hits of the last days summed in the same query (one join), for the list and the form.
        since = timezone.now().date() - timedelta(days=HIT_DAYS - 1)
        recent = Q(hits__day__gte=since)
        sums = {
            f"hits_{action}_{'shadow' if shadow else 'live'}": Sum(
                "hits__count", filter=recent & Q(hits__action=action, hits__shadow=shadow)
            )
            for action, _, _ in _OUTCOMES
            for shadow in (False, True)
        }
        return super().get_queryset(request).annotate(**sums)

    @admin.display(description=f"Requests, last {HIT_DAYS} days")
    def recent_hits(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        parts = []
        for action, done, would in _OUTCOMES:
            live = getattr(obj, f"hits_{action}_live", None) or 0
            shadow = getattr(obj, f"hits_{action}_shadow", None) or 0
            if live:
                parts.append(f"{live} {done}")
            if shadow:
                parts.append(f"{shadow} {would}")
        return ", ".join(parts) or "none"
