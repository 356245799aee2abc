"""The changes that make the database match the file, in the order they are applied."""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from llmproxy.configfile import schema
from llmproxy.configfile.parse import Entry, describe
from llmproxy.configfile.resolve import in_scope


@dataclass
class Change:
    action: str  # create, update or delete
    section: schema.Section
    label: str
    entry: Entry | None = None  # what the file says (create, update)
    obj: Any = None  # the database row (update, delete)
    changed: dict = field(default_factory=dict)  # field -> (old, new), in file terms
    note: str = ""


def _compared(section, current, wanted):
    return {
        fd.name: (current[fd.name], wanted[fd.name])
        for fd in section.compared
        if current[fd.name] != wanted[fd.name]
    }


class _Planner:
    def __init__(self, config, db, tenant, prune):
        self.config, self.db, self.tenant, self.prune = config, db, tenant, prune
        self.changes, self.deletions = [], []

    def entries(self, section):
        return [e for e in self.config.entries(section) if in_scope(e.scope_tenant, self.tenant)]

    def rows(self, section, rows):
        """Rows of a section in scope, with their identity; rows the file cannot name are left out."""
        for obj in rows:
            slug = obj.slug if section is schema.TENANTS else (obj.tenant.slug if obj.tenant_id else None)
            identity = self.db.identity(section, obj)
            if in_scope(slug, self.tenant) and identity is not None:
                yield identity, obj

    def update_or_create(self, entry, obj):
        if obj is None:
            self.changes.append(Change("create", entry.section, entry.label, entry=entry))
            return
        changed = _compared(entry.section, self.db.values(entry.section, obj), entry.values)
        if changed:
            label = describe(entry.section, self.db.values(entry.section, obj))
            self.changes.append(Change("update", entry.section, label, entry=entry, obj=obj, changed=changed))

    def delete(self, section, obj, note=""):
        label = describe(section, self.db.values(section, obj))
        self.deletions.append(Change("delete", section, label, obj=obj, note=note))

    def matched(self, section, rows):
        """Each entry with its row by identity (None: to create); then the rows no entry claimed."""
        by_identity = dict(self.rows(section, rows))
        pairs = [(entry, by_identity.pop(entry.identity, None)) for entry in self.entries(section)]
        return pairs, list(by_identity.values())

    def plan(self):
        for entry, obj in self.matched(schema.TENANTS, self.db.tenants.values())[0]:
            # Tenants are never pruned: one carries keys, users and logs. Deactivate it instead.
            self.update_or_create(entry, obj)

        pairs, unclaimed_providers = self.matched(schema.PROVIDERS, self.db.providers.values())
        for entry, obj in pairs:
            self.update_or_create(entry, obj)

        self.plan_routes()

        for tenant_entry in self.entries(schema.TENANTS):
            for entry in tenant_entry.children.get("api_keys", []):
                # A key is made once: its secret is shown once and cannot be made again from the file.
                if not self.db.named_keys.get(entry.identity):
                    self.changes.append(Change("create", schema.API_KEYS, entry.label, entry=entry))

        unclaimed = {}
        for section, rows in (
            (schema.QUOTAS, self.db.quotas),
            (schema.MODEL_POLICIES, self.db.policies),
            (schema.GUARDRAILS, self.db.guardrails),
        ):
            pairs, unclaimed[section.key] = self.matched(section, rows)
            for entry, obj in pairs:
                self.update_or_create(entry, obj)

        if self.prune:
            for section in (schema.QUOTAS, schema.MODEL_POLICIES, schema.GUARDRAILS):
                if self.config.manages(section):
                    for obj in unclaimed[section.key]:
                        self.delete(section, obj)
            if self.config.manages(schema.PROVIDERS):
                doomed = {obj.pk for obj in unclaimed_providers}
                deleted_routes = {
                    change.obj.pk for change in self.deletions if change.section is schema.ROUTES
                }
                for route in self.db.routes:
                    if route.provider_id in doomed and route.pk not in deleted_routes:
                        self.delete(schema.ROUTES, route, note="its provider is deleted")
                for obj in unclaimed_providers:
                    self.delete(schema.PROVIDERS, obj)
        return self.changes + self.deletions

    def plan_routes(self):
        # A route is matched by model, provider and upstream model; an entry that
        # matches none takes over a leftover route of the same model and provider,
        # so that editing upstream_model changes the route instead of adding one.
        exact = defaultdict(list)
        for identity, obj in self.rows(schema.ROUTES, self.db.routes):
            exact[identity].append(obj)
        pairs, unmatched = [], []
        for entry in self.entries(schema.ROUTES):
            rows = exact.get(entry.identity)
            (pairs.append((entry, rows.pop(0))) if rows else unmatched.append(entry))
        loose = defaultdict(list)
        for identity, rows in exact.items():
            loose[identity[:3]].extend(rows)
        for entry in unmatched:
            rows = loose.get(entry.identity[:3])
            pairs.append((entry, rows.pop(0) if rows else None))
        order = {id(entry): n for n, entry in enumerate(self.entries(schema.ROUTES))}
        for entry, obj in sorted(pairs, key=lambda pair: order[id(pair[0])]):
            self.update_or_create(entry, obj)
        if self.prune and self.config.manages(schema.ROUTES):
            for rows in loose.values():
                for obj in rows:
                    self.delete(schema.ROUTES, obj)


def plan(config, db, *, tenant=None, prune=False):
    return _Planner(config, db, tenant, prune).plan()
