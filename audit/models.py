from decimal import Decimal

from django.conf import settings
from django.db import models


class AuditLog(models.Model):
    """Control-plane actions and security events."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True, help_text="e.g. 'command', 'admin:alice'.")
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_logs"
    )
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=300, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_repr}"


class RequestLog(models.Model):
    """One row per proxied request. No prompt text unless the tenant opts in."""

    created_at = models.DateTimeField(db_index=True)
    request_id = models.CharField(max_length=128)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="request_logs")
    api_key = models.ForeignKey(
        "keys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="request_logs"
    )
    key_prefix = models.CharField(max_length=16, blank=True)
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    status = models.PositiveSmallIntegerField()
    stream = models.BooleanField(default=False)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False)
    cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))
    latency_ms = models.FloatField(default=0)
    ttfb_ms = models.FloatField(null=True, blank=True)
    cache_hit = models.BooleanField(default=False)
    error_type = models.CharField(max_length=64, blank=True)
    attempts = models.JSONField(default=list, blank=True)
    prompt = models.TextField(blank=True)
    completion = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["api_key", "-created_at"]),
        ]

    def __str__(self):
        return f"{self.request_id} {self.model} {self.status}"
