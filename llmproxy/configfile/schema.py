"""What the config file may say: its sections, their fields and how each maps onto a model.

A field left out of an entry takes the model's default, so an entry describes
its object completely and applying it resets whatever the file does not say.
"""

from dataclasses import dataclass
from typing import Any

from llmproxy.configfile import fields as f
from llmproxy.guardrails.regex_timeout import MAX_PATTERN_LENGTH
from providers.models import ModelPolicy, ModelRoute, Provider
from quotas.models import QuotaLimit
from tenants.models import Guardrail, Tenant

_MODEL_DEFAULT = object()


@dataclass(frozen=True)
class Field:
    name: str  # as written in the file
    check: Any
    attr: str | None = None  # the model attribute; None: not a column (a reference or a nested list)
    required: bool = False
    default: Any = _MODEL_DEFAULT
    # A many-to-many attribute, set once the row is saved (a guardrail's API keys, given by name).
    related: str | None = None
    # False: the audit log says the field changed, not its values (a guardrail's
    # pattern and words may name what the tenant wants kept out of sight).
    audited: bool = True


@dataclass(frozen=True)
class Section:
    key: str  # top-level key, or the nested key under a tenant
    noun: str
    model: Any
    audit_name: str  # audit actions are "<audit_name>.create|update|delete"
    fields: tuple
    # Fields that are refused outright, with the reason.
    refused: tuple = ()
    nested: tuple = ()  # sections written inside each entry (a tenant's api_keys)

    def field(self, name):
        return next((fd for fd in self.fields if fd.name == name), None)

    def default(self, fd):
        if fd.default is not _MODEL_DEFAULT:
            return fd.default
        return self.model._meta.get_field(fd.attr).get_default()

    @property
    def columns(self):
        return [fd for fd in self.fields if fd.attr]

    @property
    def compared(self):
        """The fields that make a row differ from its entry: its columns and its related sets."""
        return [fd for fd in self.fields if fd.attr or fd.related]


API_KEYS = Section(
    key="api_keys",
    audit_name="api_key",
    noun="API key",
    model=None,
    fields=(
        Field("name", f.text(200, required=True), required=True),
        Field("models", f.model_names, default=None),
        Field("expires_in", f.duration, default=None),
    ),
)

TENANTS = Section(
    key="tenants",
    audit_name="tenant",
    noun="tenant",
    model=Tenant,
    fields=(
        Field("slug", f.slug, attr="slug", required=True),
        Field("name", f.text(200), attr="name"),
        Field("active", f.boolean, attr="is_active"),
        Field("allowed_models", f.model_names, attr="allowed_models"),
        Field("cache_ttl_seconds", f.whole(), attr="cache_ttl_seconds"),
        Field("cache_skip_nondeterministic", f.boolean, attr="cache_skip_nondeterministic"),
        Field("store_prompts", f.boolean, attr="store_prompts"),
        Field("retention_days", f.whole(), attr="retention_days"),
        Field("max_input_tokens", f.whole(), attr="max_input_tokens"),
        Field("max_output_tokens", f.whole(), attr="max_output_tokens"),
        Field("allowed_parameters", f.model_names, attr="allowed_parameters"),
        Field("redis_down_policy", f.choice(Tenant.RedisDownPolicy.values), attr="redis_down_policy"),
    ),
    nested=(API_KEYS,),
)

PROVIDERS = Section(
    key="providers",
    audit_name="provider",
    noun="provider",
    model=Provider,
    fields=(
        Field("name", f.text(100, required=True), attr="name", required=True),
        Field("kind", f.choice(Provider.Kind.values), attr="kind", required=True),
        Field("base_url", f.base_url, attr="base_url"),
        Field("api_key_env", f.env_var, attr="api_key_env"),
        Field("api_version", f.text(40), attr="api_version"),
        Field("extra_headers", f.headers, attr="extra_headers"),
        Field("timeout_seconds", f.seconds, attr="timeout_seconds"),
        Field("connect_timeout_seconds", f.seconds, attr="connect_timeout_seconds"),
        Field("first_byte_timeout_seconds", f.optional_seconds, attr="first_byte_timeout_seconds"),
        Field("options", f.options, attr="options"),
        Field("active", f.boolean, attr="is_active"),
        Field("tenant", f.optional_slug, default=None),
    ),
    refused=(
        (
            "api_key",
            "a credential is never written in the file: put it in an environment variable "
            "of the proxy and name that variable with api_key_env",
        ),
    ),
)

ROUTES = Section(
    key="routes",
    audit_name="model_route",
    noun="route",
    model=ModelRoute,
    fields=(
        Field("model", f.model_name, attr="model", required=True),
        Field("provider", f.text(100, required=True), required=True),
        Field("upstream_model", f.model_name, attr="upstream_model", required=True),
        Field("priority", f.whole(), attr="priority"),
        Field("weight", f.whole(), attr="weight"),
        Field("input_price", f.decimal(12, 6), attr="input_price"),
        Field("output_price", f.decimal(12, 6), attr="output_price"),
        Field("active", f.boolean, attr="is_active"),
        Field("tenant", f.optional_slug, default=None),
    ),
)

QUOTAS = Section(
    key="quotas",
    audit_name="quota_limit",
    noun="quota",
    model=QuotaLimit,
    fields=(
        Field("tenant", f.slug, required=True),
        Field("scope", f.choice(QuotaLimit.Scope.values), attr="scope"),
        Field("user", f.optional_text(150), default=None),
        Field("key", f.optional_text(200), default=None),
        Field("metric", f.choice(QuotaLimit.Metric.values), attr="metric", required=True),
        Field("period", f.choice(QuotaLimit.Period.values), attr="period", required=True),
        Field("limit", f.decimal(18, 6), attr="limit", required=True),
    ),
)

MODEL_POLICIES = Section(
    key="model_policies",
    audit_name="model_policy",
    noun="model policy",
    model=ModelPolicy,
    fields=(
        Field("model", f.model_name, attr="model", required=True),
        Field("strategy", f.choice(ModelPolicy.Strategy.values), attr="strategy"),
        Field("fallback_models", f.model_names, attr="fallback_models"),
        Field("max_attempts", f.whole(1, 10), attr="max_attempts"),
        Field("deadline_seconds", f.optional_seconds, attr="deadline_seconds"),
        Field("tenant", f.optional_slug, default=None),
    ),
)

GUARDRAILS = Section(
    key="guardrails",
    audit_name="guardrail",
    noun="guardrail",
    model=Guardrail,
    fields=(
        Field("tenant", f.slug, required=True),
        Field("name", f.text(100, required=True), attr="name", required=True),
        Field("detector", f.choice(Guardrail.Detector.values), attr="detector", required=True),
        Field("pattern", f.text(MAX_PATTERN_LENGTH), attr="pattern", audited=False),
        Field("words", f.words, attr="words", audited=False),
        Field("direction", f.choice(Guardrail.Direction.values), attr="direction"),
        Field("action", f.choice(Guardrail.Action.values), attr="action"),
        Field("shadow", f.boolean, attr="shadow"),
        Field("models", f.model_names, attr="models"),
        Field("api_keys", f.key_names, related="api_keys", default=[]),
        Field("active", f.boolean, attr="is_active"),
    ),
)

# In the order they are applied: a route needs its provider, a quota or a guardrail its keys.
SECTIONS = (TENANTS, PROVIDERS, ROUTES, QUOTAS, MODEL_POLICIES, GUARDRAILS)
