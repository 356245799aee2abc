from django.conf import settings
from django.db import models


class AccessToken(models.Model):
    """A REST API token, ``lpt-AAAAAAAA-<secret>``, issued to a user.

    Like API keys, only the prefix and a keyed digest are stored (DRF's own
    Token model keeps the plain key, which a database dump would reveal).
    """

    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "REST API token"

    def __str__(self):
        return f"{self.prefix} ({self.user})"
