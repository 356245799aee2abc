"""Guardrails (each tenant's content rules) and their daily hit counts.

A pattern is checked as in the admin and the command (Guardrail.clean: it must
compile and not backtrack catastrophically). A guardrail's pattern and words
never go to the audit log, only whether they are set: they may name what the
tenant wants kept out of sight.
"""

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from keys.models import ApiKey
from llmproxy.api.base import ScopedApi, ScopedDetailApi, ScopedListApi, ScopedRelatedField, filtered
from llmproxy.api.fields import ModelNamesField
from llmproxy.api.pagination import Pages
from llmproxy.guardrails.regex_timeout import MAX_PATTERN_LENGTH
from llmproxy.guardrails.services import guardrail_create
from tenants.models import Guardrail, GuardrailHit, Tenant

FIELDS = (
    "tenant",
    "name",
    "detector",
    "pattern",
    "words",
    "direction",
    "action",
    "shadow",
    "models",
    "is_active",
)
UNRECORDED = frozenset({"pattern", "words"})
NOT_RECORDED = "(not recorded)"


class GuardrailOutput(serializers.ModelSerializer):
    api_keys = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Keys the rule applies to; empty means all the tenant's keys."
    )

    class Meta:
        model = Guardrail
        fields = ("id", *FIELDS, "api_keys", "created_at", "updated_at")
        read_only_fields = fields


class GuardrailInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="Unique in the tenant, e.g. no-card-numbers.")
    detector = serializers.ChoiceField(choices=Guardrail.Detector.choices)
    pattern = serializers.CharField(
        max_length=MAX_PATTERN_LENGTH,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="For the regex detector. Refused if it does not compile, matches the empty string or "
        "backtracks catastrophically, like (a+)+$.",
    )
    words = serializers.ListField(
        child=serializers.CharField(max_length=200),
        max_length=1000,
        required=False,
        help_text="For the wordlist detector: whole words or phrases, any case.",
    )
    direction = serializers.ChoiceField(
        choices=Guardrail.Direction.choices, help_text="Prompts (request), answers (response) or both."
    )
    action = serializers.ChoiceField(
        choices=Guardrail.Action.choices,
        help_text="block: 400 guardrail_blocked (a stream ends with an error event); "
        "mask: matches become [REDACTED:DETECTOR]; flag: let through and record.",
    )
    shadow = serializers.BooleanField(
        required=False, help_text="Change nothing; record what the rule would have done."
    )
    models = ModelNamesField(help_text="Public model names the rule applies to; empty means all.")
    api_keys = ScopedRelatedField(
        ApiKey,
        many=True,
        required=False,
        help_text="Ids of the tenant's keys the rule applies to; empty means all.",
    )
    is_active = serializers.BooleanField(required=False)


def _check_keys(api_keys, tenant):
    if any(key.tenant_id != tenant.pk for key in api_keys):
        raise ValidationError({"api_keys": "Pick keys of the guardrail's own tenant."})


def _key_prefixes(guardrail):
    return sorted(guardrail.api_keys.values_list("prefix", flat=True))


def _audited(changed):
    """``changed`` with the pattern's and words' values replaced by whether they are set."""
    for name in UNRECORDED & changed.keys():
        changed[name] = [NOT_RECORDED if value else value for value in changed[name]]
    return changed


class GuardrailListApi(ScopedListApi):
    model = Guardrail
    pagination_class = Pages
    ordering = ("tenant_id", "name", "id")

    class OutputSerializer(GuardrailOutput):
        pass

    class InputSerializer(GuardrailInput):
        tenant = ScopedRelatedField(
            Tenant, required=False, help_text="A platform admin names it; a tenant admin's own by default."
        )

    def base_queryset(self):
        return Guardrail.objects.prefetch_related("api_keys")

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        tenant = values.pop("tenant", None) if self.is_platform_admin else request.user.tenant
        if tenant is None:
            raise ValidationError({"tenant": "A platform admin names the guardrail's tenant."})
        # The service checks the name, the keys' tenant and the pattern, and writes the audit row.
        guardrail = guardrail_create(tenant=tenant, actor=request.user, **values)
        return Response(self.OutputSerializer(guardrail).data, status=status.HTTP_201_CREATED)


class GuardrailDetailApi(ScopedDetailApi):
    model = Guardrail
    audited_fields = FIELDS

    class OutputSerializer(GuardrailOutput):
        pass

    class InputSerializer(GuardrailInput):
        pass

    def base_queryset(self):
        return Guardrail.objects.prefetch_related("api_keys")

    def check_change(self, guardrail, values):
        if values.get("api_keys") is not None:
            _check_keys(values["api_keys"], guardrail.tenant)

    def save_change(self, guardrail, values):
        api_keys = values.pop("api_keys", None)
        keys_before = _key_prefixes(guardrail)
        changed = super().save_change(guardrail, values)
        if api_keys is not None:
            guardrail.api_keys.set(api_keys)
            keys_after = _key_prefixes(guardrail)
            if keys_after != keys_before:
                changed["api_keys"] = [keys_before, keys_after]
        return _audited(changed)


class GuardrailHitListApi(ScopedApi):
    """Requests each guardrail acted on (or, in shadow mode, would have) per UTC day; newest first."""

    model = GuardrailHit
    pagination_class = Pages

    class FilterSerializer(serializers.Serializer):
        since = serializers.DateField(required=False, help_text="From this UTC day on (inclusive).")
        until = serializers.DateField(required=False, help_text="Days before this one.")
        guardrail = serializers.IntegerField(
            required=False, min_value=1, max_value=2**63 - 1, help_text="A guardrail's id."
        )
        action = serializers.ChoiceField(choices=Guardrail.Action.choices, required=False)
        shadow = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="Only shadow-mode hits, or only real ones.",
        )
        tenant = serializers.SlugField(required=False, max_length=63, help_text="Tenant slug.")

    class OutputSerializer(serializers.ModelSerializer):
        guardrail_name = serializers.CharField(source="guardrail.name", read_only=True)
        tenant = serializers.IntegerField(source="guardrail.tenant_id", read_only=True)

        class Meta:
            model = GuardrailHit
            fields = ("id", "day", "tenant", "guardrail", "guardrail_name", "action", "shadow", "count")
            read_only_fields = fields

    def base_queryset(self):
        return GuardrailHit.objects.select_related("guardrail")

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        rows = filtered(
            self.get_queryset(),
            values,
            since="day__gte",
            until="day__lt",
            guardrail="guardrail_id",
            action="action",
            tenant="guardrail__tenant__slug",
        )
        if values.get("shadow") is not None:
            rows = rows.filter(shadow=values["shadow"])
        rows = rows.order_by("-day", "guardrail__name", "action", "shadow", "id")
        return self.paginated(rows, self.OutputSerializer)
