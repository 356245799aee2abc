"""The database as a config file that apply_config reads back without a change.

Written entry by entry (not one yaml.dump) so that comments can say what the
file leaves out: a credential stored in the database, a quota or a guardrail on
a key the file cannot name.
"""

from decimal import Decimal

import yaml

from keys.models import ApiKey
from llmproxy.configfile import schema
from llmproxy.configfile.parse import VERSION
from llmproxy.configfile.resolve import in_scope
from llmproxy.configfile.state import DatabaseState, slug_of

# Left out of an entry when empty: they read as noise on every provider.
_OMITTED_WHEN_EMPTY = {
    *("base_url", "api_key_env", "api_version", "extra_headers", "options", "allowed_models"),
    *("first_byte_timeout_seconds", "fallback_models", "deadline_seconds"),
    *("pattern", "words", "models", "api_keys"),
}


def _number(value):
    """A Decimal as YAML writes it back exactly: an integer, a float, or (beyond float) a string."""
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


def _entry(section, values):
    entry = {}
    for fd in section.fields:
        value = values.get(fd.name)
        if fd.name in ("tenant", "user", "key") and value is None:
            continue
        if fd.name in _OMITTED_WHEN_EMPTY and not value:
            continue
        if section is schema.QUOTAS and fd.name == "scope" and value == "tenant":
            continue
        entry[fd.name] = _number(value) if isinstance(value, Decimal) else value
    return entry


def _item(entry, comments=()):
    text = yaml.safe_dump([entry], sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    lines = [f"# {comment}" for comment in comments] + text.rstrip("\n").splitlines()
    return ["  " + line for line in lines]


def _section(key, items):
    if not items:
        return [f"{key}: []"]
    return [f"{key}:"] + [line for item in items for line in item]


def _api_keys(tenant, referenced):
    """The tenant's named keys not revoked, and any key a quota names."""
    names = []
    for key in ApiKey.objects.filter(tenant=tenant).exclude(name="").order_by("name", "id"):
        if (key.revoked_at is None or key.name in referenced) and key.name not in names:
            names.append(key.name)
    return [{"name": name} | _key_models(tenant, name) for name in names]


def _key_models(tenant, name):
    key = ApiKey.objects.filter(tenant=tenant, name=name, revoked_at__isnull=True).order_by("id").first()
    return {"models": key.allowed_models} if key is not None and key.allowed_models else {}


def export_config(*, tenant=None):
    """The current set-up (of one tenant's slug, or all) as config file text."""
    db = DatabaseState()

    def wanted(obj_tenant):
        return in_scope(slug_of(obj_tenant), tenant)

    quotas, unnamed_quotas = [], []
    for quota in db.quotas:
        if wanted(quota.tenant):
            values = db.values(schema.QUOTAS, quota)
            (quotas if values is not None else unnamed_quotas).append((quota, values))
    quotas.sort(
        key=lambda pair: (
            pair[1]["tenant"],
            pair[1]["scope"],
            pair[1]["user"] or pair[1]["key"] or "",
            pair[1]["metric"],
            pair[1]["period"],
        )
    )

    guardrails, unnamed_guardrails = [], []
    for guardrail in db.guardrails:
        if wanted(guardrail.tenant):
            values = db.values(schema.GUARDRAILS, guardrail)
            (guardrails if values is not None else unnamed_guardrails).append((guardrail, values))
    guardrails.sort(key=lambda pair: (pair[1]["tenant"], pair[1]["name"]))

    tenant_items = []
    for obj in sorted(db.tenants.values(), key=lambda t: t.slug):
        if not wanted(obj):
            continue
        entry = _entry(schema.TENANTS, db.values(schema.TENANTS, obj))
        referenced = {values["key"] for _, values in quotas if values["tenant"] == obj.slug and values["key"]}
        referenced |= {
            name for _, values in guardrails if values["tenant"] == obj.slug for name in values["api_keys"]
        }
        keys = _api_keys(obj, referenced)
        if keys:
            entry["api_keys"] = keys
        tenant_items.append(_item(entry))

    provider_items = []
    for _key, obj in sorted(db.providers.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        if wanted(obj.tenant):
            comments = []
            if obj.encrypted_api_key:
                comments += [
                    "A credential of this provider is stored (encrypted) in the database:",
                    "the file does not carry it, and apply_config leaves it as it is.",
                ]
            provider_items.append(_item(_entry(schema.PROVIDERS, db.values(schema.PROVIDERS, obj)), comments))

    route_items, seen = [], {}
    routes = sorted(db.routes, key=lambda r: (slug_of(r.tenant) or "", r.model, r.priority, -r.weight, r.id))
    for obj in routes:
        if wanted(obj.tenant):
            identity = db.identity(schema.ROUTES, obj)
            if identity in seen:
                # Two rows alike in model, provider and upstream model: the file describes one.
                seen[identity].insert(
                    0, "  # another route exactly like this one exists; the file names it once"
                )
                continue
            seen[identity] = _item(_entry(schema.ROUTES, db.values(schema.ROUTES, obj)))
            route_items.append(seen[identity])

    quota_items = [_item(_entry(schema.QUOTAS, values)) for _, values in quotas]
    policy_items = [
        _item(_entry(schema.MODEL_POLICIES, db.values(schema.MODEL_POLICIES, obj)))
        for obj in sorted(db.policies, key=lambda p: (slug_of(p.tenant) or "", p.model))
        if wanted(obj.tenant)
    ]
    guardrail_items = [_item(_entry(schema.GUARDRAILS, values)) for _, values in guardrails]
    lines = [
        "# The proxy's configuration, written by export_config. Credentials are never written here:",
        "# a provider names the environment variable that holds its credential (api_key_env).",
        f"version: {VERSION}",
        *_section("tenants", tenant_items),
        *_section("providers", provider_items),
        *_section("routes", route_items),
        *_section("quotas", quota_items),
        *_section("model_policies", policy_items),
        *_section("guardrails", guardrail_items),
    ]
    for quota, _ in unnamed_quotas:
        lines.append(
            f"# not exported: a quota on the key {quota.api_key.prefix} of tenant {quota.tenant.slug}, "
            "which has no name of its own to refer to it by"
        )
    for guardrail, _ in unnamed_guardrails:
        prefixes = ", ".join(db.unnameable_keys(guardrail))
        lines.append(
            f"# not exported: the guardrail {guardrail.name} of tenant {guardrail.tenant.slug}, on the key "
            f"{prefixes}, which has no name of its own to refer to it by"
        )
    return "\n".join(lines) + "\n"
