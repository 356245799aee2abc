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
        default=0,
        editable=False,
        help_text="Part of every response-cache key: clearing the cache bumps it, in every process at once.",
    )
    store_prompts = models.BooleanField(
        default=False, help_text="Store prompt and completion text in the request log (redacted)."
    )
    max_input_tokens = models.PositiveIntegerField(
        default=0, help_text="Refuse requests whose input is longer than this many tokens; 0: no limit."
    )
    max_output_tokens = models.PositiveIntegerField(
        default=0, help_text="Refuse a larger max_tokens (and send this one when none is given); 0: no limit."
    )
    allowed_parameters = models.JSONField(
        default=list,
        blank=True,
        help_text="Request fields allowed besides model, messages/prompt/input and stream; empty: all.",
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
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="users")

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


class GuardrailQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


class Guardrail(models.Model):
    """A tenant's content rule on prompts and answers: what to look for, where, and what to do."""

    class Detector(models.TextChoices):
        EMAIL = "email", "Email addresses"
        PHONE = "phone", "Phone numbers"
        CARD = "card", "Payment card numbers (Luhn-checked)"
        IBAN = "iban", "IBANs (checksum-checked)"
        SECRET = "secret", "API keys and tokens (OpenAI, Anthropic, AWS, GitHub, JWT)"
        IP = "ip", "IP addresses (v4 and v6)"
        REGEX = "regex", "Regular expression"
        WORDLIST = "wordlist", "Word list"

    class Direction(models.TextChoices):
        REQUEST = "request", "Requests (prompts)"
        RESPONSE = "response", "Responses (answers)"
        BOTH = "both", "Both"

    class Action(models.TextChoices):
        BLOCK = "block", "Block"
        MASK = "mask", "Mask"
        FLAG = "flag", "Flag"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="guardrails")
    name = models.CharField(max_length=100)
    detector = models.CharField(max_length=16, choices=Detector.choices)
    pattern = models.TextField(
        blank=True, help_text="For the regex detector: checked when saved, run with a time bound."
    )
    words = models.JSONField(
        default=list, blank=True, help_text="For the word-list detector: whole words, any case."
    )
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.BOTH)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.FLAG)
    shadow = models.BooleanField(
        default=False, help_text="Flag only: record what the rule would have done, change nothing."
    )
    api_keys = models.ManyToManyField(
        "keys.ApiKey",
        blank=True,
        related_name="guardrails",
        help_text="Keys this rule applies to; none means all.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Declared last: from here on the class body's ``models`` is this field, not django.db.models.
    models = models.JSONField(
        default=list, blank=True, help_text="Public model names this rule applies to; empty means all."
    )

    objects = GuardrailQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="guardrail_name_unique_per_tenant"),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        from llmproxy.guardrails.regex_timeout import UnsafePattern, check_pattern

        errors = {}
        if self.detector == self.Detector.REGEX:
            try:
                check_pattern(self.pattern)
            except UnsafePattern as exc:
                errors["pattern"] = str(exc)
        elif self.pattern:
            errors["pattern"] = "Only the regex detector takes a pattern."
        if self.detector == self.Detector.WORDLIST:
            if not isinstance(self.words, list) or not all(isinstance(w, str) for w in self.words):
                errors["words"] = "Give a list of words."
            elif not any(w.strip() for w in self.words):
                errors["words"] = "Give at least one word."
        elif self.words:
            errors["words"] = "Only the word-list detector takes words."
        if not isinstance(self.models, list) or not all(isinstance(m, str) and m for m in self.models):
            errors["models"] = "Give a list of model names."
        if errors:
            raise ValidationError(errors)


class GuardrailHit(models.Model):
    """How many requests a guardrail acted on (or would have, in shadow mode) in one UTC day."""

    guardrail = models.ForeignKey(Guardrail, on_delete=models.CASCADE, related_name="hits")
    day = models.DateField()
    action = models.CharField(max_length=8, choices=Guardrail.Action.choices)
    shadow = models.BooleanField(default=False)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["guardrail", "day", "action", "shadow"], name="guardrail_hit_unique_day"
            ),
        ]

    def __str__(self):
        shadow = " (shadow)" if self.shadow else ""
        return f"{self.guardrail_id} {self.day} {self.action}{shadow}: {self.count}"
