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
    # The hash chain (audit/chain.py): one chain per tenant, numbered by the tenant's
    # id at write time (0: rows of no tenant), so deleting a tenant (tenant set to
    # NULL) leaves its rows verifiable. Rows without a chain were not written by
    # audit_record and fail verification.
    chain = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    seq = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    row_hash = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            # Verification walks one chain in id order.
            models.Index(fields=["chain", "id"], name="audit_log_chain_walk"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="audit_log_chain_seq_unique"),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_repr}"


class AuditChain(models.Model):
    """The head of one audit chain: its newest row, and where purges cut it.

    audit_record locks this row while it appends, so two writers of one chain
    cannot both link to the same predecessor. The anchor is the last purged
    row: the oldest row left must link to it.
    """

    chain = models.PositiveBigIntegerField(unique=True)
    seq = models.PositiveBigIntegerField(default=0)
    row_hash = models.CharField(max_length=64, blank=True)
    anchor_seq = models.PositiveBigIntegerField(default=0)
    anchor_hash = models.CharField(max_length=64, blank=True)

    def __str__(self):
        return f"audit chain {self.chain} at {self.seq}"


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
