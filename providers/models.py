import os
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from providers import crypto
from providers.validators import validate_base_url

env_var_validator = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "Not an environment variable name.")


class ProviderQuerySet(models.QuerySet):
    def visible_to(self, tenant):
        """The tenant's own providers and the shared ones."""
        return self.filter(models.Q(tenant=tenant) | models.Q(tenant__isnull=True))


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        AZURE = "azure", "Azure OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        OLLAMA = "ollama", "Ollama"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
        MOCK = "mock", "Mock (built in, no network)"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    base_url = models.CharField(max_length=500, blank=True, validators=[validate_base_url])
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[env_var_validator],
        help_text="Environment variable of the proxy process holding the credential.",
    )
    encrypted_api_key = models.TextField(blank=True, editable=False)
    api_version = models.CharField(max_length=40, blank=True, help_text="Azure OpenAI api-version.")
    extra_headers = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.FloatField(
        default=60.0,
        validators=[MinValueValidator(0.1)],
        help_text=(
            "Bounds one attempt: to the last byte of a plain answer, "
            "the first byte of a stream and any silence within it."
        ),
    )
    connect_timeout_seconds = models.FloatField(default=5.0, validators=[MinValueValidator(0.1)])
    first_byte_timeout_seconds = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1)],
        help_text="Bounds the wait for a stream's first chunk, when shorter than the timeout.",
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Kind-specific options, e.g. for mock: latency_ms, chunks, chunk_delay_ms, fail_status.",
    )
    is_active = models.BooleanField(default=True)
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="providers",
        help_text="Empty: shared by all tenants.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProviderQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="provider_name_unique_per_tenant"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(tenant__isnull=True), name="provider_name_unique_shared"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.tenant or 'shared'})"

    def clean(self):
        if self.kind != self.Kind.MOCK and not self.base_url:
            raise ValidationError({"base_url": "A base URL is required for this kind."})
        if not isinstance(self.extra_headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.extra_headers.items()
        ):
            raise ValidationError({"extra_headers": "Give an object of header name to string value."})
        if not isinstance(self.options, dict):
            raise ValidationError({"options": "Give an object."})

    def set_api_key(self, plain):
        self.encrypted_api_key = crypto.encrypt(plain) if plain else ""

    def get_api_key(self):
        """The credential, read when a request is sent (env var wins over stored)."""
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        if self.encrypted_api_key:
            return crypto.decrypt(self.encrypted_api_key)
        return ""


class ModelRouteQuerySet(models.QuerySet):
    def visible_to(self, tenant):
        return self.filter(models.Q(tenant=tenant) | models.Q(tenant__isnull=True))

    def usable(self):
        return self.filter(is_active=True, provider__is_active=True)


class ModelRoute(models.Model):
    model = models.CharField(max_length=200, help_text="Public model name clients ask for.")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="routes")
    upstream_model = models.CharField(max_length=200)
    priority = models.PositiveIntegerField(default=0, help_text="Lower is tried first.")
    weight = models.PositiveIntegerField(default=1, help_text="Share of traffic among equal priorities.")
    input_price = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="USD per million input tokens.",
    )
    output_price = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="USD per million output tokens.",
    )
    is_active = models.BooleanField(default=True)
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="model_routes",
        help_text="Empty: shared by all tenants.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelRouteQuerySet.as_manager()

    class Meta:
        ordering = ["model", "priority", "-weight"]
        indexes = [models.Index(fields=["model", "tenant"])]

    def __str__(self):
        return f"{self.model} -> {self.provider.name}:{self.upstream_model}"

    def clean(self):
        if self.tenant_id and self.provider_id and self.provider.tenant_id not in (None, self.tenant_id):
            raise ValidationError({"provider": "This provider belongs to another tenant."})
        if not self.tenant_id and self.provider_id and self.provider.tenant_id:
            raise ValidationError({"provider": "A shared route needs a shared provider."})


class ModelPolicyQuerySet(models.QuerySet):
    def visible_to(self, tenant):
        return self.filter(models.Q(tenant=tenant) | models.Q(tenant__isnull=True))


class ModelPolicy(models.Model):
    """How the routes of one public model are used: strategy, retries, deadline, fallback models.

    A model without a policy is routed by priority, weighted within equal
    priorities, one try per route. A tenant's own policy replaces the shared
    one for that model, like its routes do.
    """

    class Strategy(models.TextChoices):
        PRIORITY = "priority", "Priority (lower first), weighted within equal priorities"
        WEIGHTED = "weighted", "Weighted random over all routes"
        ROUND_ROBIN = "round_robin", "Round robin"
        LEAST_LATENCY = "least_latency", "Least latency (moving average)"
        LOWEST_COST = "lowest_cost", "Lowest cost (route prices)"

    model = models.CharField(max_length=200, help_text="Public model name clients ask for.")
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="model_policies",
        help_text="Empty: shared by all tenants.",
    )
    strategy = models.CharField(max_length=20, choices=Strategy.choices, default=Strategy.PRIORITY)
    fallback_models = models.JSONField(
        default=list,
        blank=True,
        help_text="Public models whose routes are tried, in this order, once every route of this one failed.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Tries of one route (with backoff) before the next route; 1: no retry.",
    )
    deadline_seconds = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1)],
        help_text="Bounds the whole request upstream: every try, backoff and fallback. Empty: no bound.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelPolicyQuerySet.as_manager()

    class Meta:
        ordering = ["model"]
        verbose_name_plural = "model policies"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "model"], name="model_policy_unique_per_tenant"),
            models.UniqueConstraint(
                fields=["model"], condition=models.Q(tenant__isnull=True), name="model_policy_unique_shared"
            ),
        ]

    def __str__(self):
        return f"{self.model} ({self.tenant or 'shared'}): {self.strategy}"

    def clean(self):
        if not isinstance(self.fallback_models, list) or not all(
            isinstance(m, str) and m for m in self.fallback_models
        ):
            raise ValidationError({"fallback_models": "Give a list of public model names."})
        if self.model in self.fallback_models:
            raise ValidationError({"fallback_models": "A model cannot be its own fallback."})
