from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


class QuotaLimit(models.Model):
    class Scope(models.TextChoices):
        TENANT = "tenant", "Tenant"
        USER = "user", "User"
        KEY = "key", "API key"

    class Metric(models.TextChoices):
        REQUESTS = "requests", "Requests"
        TOKENS = "tokens", "Tokens (input + output)"
        COST = "cost", "Cost (USD)"

    class Period(models.TextChoices):
        MINUTE = "minute", "Minute"
        HOUR = "hour", "Hour"
        DAY = "day", "Day"
        MONTH = "month", "Month"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="quota_limits")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.TENANT)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="quota_limits"
    )
    api_key = models.ForeignKey(
        "keys.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="quota_limits"
    )
    metric = models.CharField(max_length=8, choices=Metric.choices)
    period = models.CharField(max_length=8, choices=Period.choices)
    limit = models.DecimalField(
        max_digits=18,
        decimal_places=6,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Requests, tokens or USD per period; usage may reach it but not pass it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "scope", "metric", "period"]
        constraints = [
            # One limit per target, metric and period. Spelled per scope rather
            # than with nulls_distinct=False, which SQLite does not enforce.
            models.UniqueConstraint(
                fields=["tenant", "metric", "period"],
                condition=models.Q(scope="tenant"),
                name="quota_limit_unique_tenant",
            ),
            models.UniqueConstraint(
                fields=["user", "metric", "period"],
                condition=models.Q(scope="user"),
                name="quota_limit_unique_user",
            ),
            models.UniqueConstraint(
                fields=["api_key", "metric", "period"],
                condition=models.Q(scope="key"),
                name="quota_limit_unique_key",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(scope="tenant", user__isnull=True, api_key__isnull=True)
                    | models.Q(scope="user", user__isnull=False, api_key__isnull=True)
                    | models.Q(scope="key", user__isnull=True, api_key__isnull=False)
                ),
                name="quota_limit_scope_matches_target",
            ),
        ]

    def __str__(self):
        target = {"tenant": self.tenant, "user": self.user, "key": self.api_key}[self.scope]
        return f"{self.scope} {target}: {self.limit} {self.metric}/{self.period}"

    def clean(self):
        if self.scope == self.Scope.USER and not self.user_id:
            raise ValidationError({"user": "A user-scoped limit needs a user."})
        if self.scope == self.Scope.KEY and not self.api_key_id:
            raise ValidationError({"api_key": "A key-scoped limit needs a key."})
        if self.scope != self.Scope.USER and self.user_id:
            raise ValidationError({"user": "Only a user-scoped limit names a user."})
        if self.scope != self.Scope.KEY and self.api_key_id:
            raise ValidationError({"api_key": "Only a key-scoped limit names a key."})
        if self.user_id and self.tenant_id and self.user.tenant_id != self.tenant_id:
            raise ValidationError({"user": "This user belongs to another tenant."})
        if self.api_key_id and self.tenant_id and self.api_key.tenant_id != self.tenant_id:
            raise ValidationError({"api_key": "This key belongs to another tenant."})
        if self.metric != self.Metric.COST and self.limit is not None and self.limit != int(self.limit):
            raise ValidationError({"limit": "Requests and tokens limits are whole numbers."})


class TokenUsageMetric(models.Model):
    """Hourly rollup per tenant, key and public model (written in batches by the gateway)."""

    bucket = models.DateTimeField(help_text="Start of the UTC hour.")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="usage_metrics")
    api_key = models.ForeignKey(
        "keys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_metrics"
    )
    model = models.CharField(max_length=200)
    requests = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))
    errors = models.PositiveBigIntegerField(default=0)
    cache_hits = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-bucket"]
        constraints = [
            models.UniqueConstraint(
                fields=["bucket", "tenant", "api_key", "model"],
                name="usage_bucket_unique_key",
            ),
            models.UniqueConstraint(
                fields=["bucket", "tenant", "model"],
                condition=models.Q(api_key__isnull=True),
                name="usage_bucket_unique_keyless",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "-bucket"])]

    def __str__(self):
        return f"{self.tenant} {self.model} {self.bucket:%Y-%m-%d %H:00}"
