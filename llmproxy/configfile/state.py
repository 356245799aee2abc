"""The database as the config file sees it: every object as the entry that would describe it."""

from collections import defaultdict

from keys.models import ApiKey
from llmproxy.configfile import schema
from llmproxy.configfile.parse import identity
from providers.models import ModelPolicy, ModelRoute, Provider
from quotas.models import QuotaLimit
from tenants.models import Guardrail, Tenant

# Several keys of one tenant answer to one name: the file cannot say which.
AMBIGUOUS = object()


def slug_of(tenant):
    return tenant.slug if tenant is not None else None


class DatabaseState:
    """One read of everything the file can describe, taken inside the applying transaction."""

    def __init__(self):
        self.tenants = {t.slug: t for t in Tenant.objects.all()}
        self.providers = {
            (slug_of(p.tenant), p.name): p for p in Provider.objects.select_related("tenant").order_by("id")
        }
        self.routes = list(ModelRoute.objects.select_related("tenant", "provider__tenant").order_by("id"))
        self.quotas = list(QuotaLimit.objects.select_related("tenant", "user", "api_key").order_by("id"))
        self.policies = list(ModelPolicy.objects.select_related("tenant").order_by("id"))
        self.guardrails = list(
            Guardrail.objects.select_related("tenant").prefetch_related("api_keys").order_by("id")
        )
        self.named_keys = defaultdict(list)
        for key in ApiKey.objects.exclude(name="").select_related("tenant").order_by("id"):
            self.named_keys[(key.tenant.slug, key.name)].append(key)

    def key_named(self, slug, name):
        """The key a file means by ``name`` in a tenant: None, a key, or AMBIGUOUS.

        Among several keys of one name the one not revoked is meant (a key
        revoked and made again under its old name).
        """
        keys = self.named_keys.get((slug, name), [])
        if len(keys) > 1:
            keys = [key for key in keys if key.revoked_at is None]
            return keys[0] if len(keys) == 1 else AMBIGUOUS
        return keys[0] if keys else None

    def values(self, section, obj):
        """The obj's entry, field by field in file terms; None when the file cannot name it."""
        values = {fd.name: getattr(obj, fd.attr) for fd in section.columns}
        if section is schema.TENANTS:
            return values
        values["tenant"] = slug_of(obj.tenant)
        if section is schema.ROUTES:
            values["provider"] = obj.provider.name
        if section is schema.QUOTAS:
            values["user"] = obj.user.username if obj.user_id else None
            values["key"] = None
            if obj.api_key_id:
                values["key"] = self.nameable(values["tenant"], obj.api_key)
                if values["key"] is None:
                    return None
        if section is schema.GUARDRAILS:
            values["api_keys"] = []
            for api_key in obj.api_keys.all():
                name = self.nameable(values["tenant"], api_key)
                if name is None:
                    return None
                values["api_keys"].append(name)
            values["api_keys"].sort()
        return values

    def nameable(self, slug, api_key):
        """The key's name when the file can refer to the key by it; None otherwise."""
        named = self.key_named(slug, api_key.name) if api_key.name else None
        return api_key.name if getattr(named, "pk", None) == api_key.pk else None

    def unnameable_keys(self, guardrail):
        """The prefixes of a guardrail's keys that the file cannot name."""
        return [k.prefix for k in guardrail.api_keys.all() if self.nameable(guardrail.tenant.slug, k) is None]

    def identity(self, section, obj):
        values = self.values(section, obj)
        if values is None:
            return None
        provider_scope = slug_of(obj.provider.tenant) if section is schema.ROUTES else None
        return identity(section, values, provider_scope)
