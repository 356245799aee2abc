from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "A slug is lowercase letters, digits and '-', not starting or ending with '-' (max 63).",
)


class TenantQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


class Tenant(models.Model):
    class RedisDownPolicy(models.TextChoices):
        FAIL_CLOSED = "closed", "Fail closed (refuse requests with 503)"
        FAIL_OPEN = "open", "Fail open (per-process limits)"

    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Public model names this tenant may use; empty means all."
    )
    cache_ttl_seconds = models.PositiveIntegerField(
        default=0, help_text="Response cache lifetime in seconds; 0 turns the cache off."
    )
    cache_skip_nondeterministic = models.BooleanField(
        default=False, help_text="Do not cache requests with temperature > 0 or n > 1."
    )
    cache_generation = models.PositiveIntegerField(
        default=0, editable=False,
        help_text="Part of every response-cache key: clearing the cache bumps it, in every process at once.",
    )
    store_prompts = models.BooleanField(
        default=False, help_text="Store prompt and completion text in the request log (redacted)."
    )
    retention_days = models.PositiveIntegerField(
        default=90, help_text="Audit and request logs older than this are purged."
    )
    redis_down_policy = models.CharField(
        max_length=8, choices=RedisDownPolicy.choices, default=RedisDownPolicy.FAIL_CLOSED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug

    def clean(self):
        if not isinstance(self.allowed_models, list) or not all(
            isinstance(m, str) and m for m in self.allowed_models
        ):
            raise ValidationError({"allowed_models": "Give a list of model names."})


class User(AbstractUser):
    class Role(models.TextChoices):
        ADMIN = "admin", "Platform admin"
        TENANT_ADMIN = "tenant_admin", "Tenant admin"
        USER = "user", "User"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )

    objects = UserManager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role="admin") | models.Q(tenant__isnull=False),
                name="user_tenant_required_unless_admin",
            )
        ]

    @property
    def is_platform_admin(self):
        return self.is_active and (self.role == self.Role.ADMIN or self.is_superuser)

    def clean(self):
        super().clean()
        if self.role != self.Role.ADMIN and self.tenant_id is None:
            raise ValidationError({"tenant": "A tenant is required unless the role is admin."})

    def save(self, *args, **kwargs):
        # The role decides admin-site access: a plain user never logs in there.
        self.is_staff = self.role in (self.Role.ADMIN, self.Role.TENANT_ADMIN)
        self.is_superuser = self.role == self.Role.ADMIN
        super().save(*args, **kwargs)
