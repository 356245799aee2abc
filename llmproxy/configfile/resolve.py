"""References between entries, checked against the file and the database together.

A tenant, provider, user or key named by an entry must exist in the file or in
the database. A route's provider is looked up like create_model_route does:
the tenant's own provider of that name first, then a shared one.
"""

from llmproxy.configfile import schema
from llmproxy.configfile.errors import ConfigError, Problem
from llmproxy.configfile.state import AMBIGUOUS, slug_of
from tenants.models import User


def in_scope(slug, tenant):
    """Whether an object of tenant ``slug`` (None: shared) is within --tenant ``tenant``."""
    return tenant is None or slug == tenant


class _Resolver:
    def __init__(self, config, db, tenant, prune):
        self.config, self.db, self.tenant, self.prune = config, db, tenant, prune
        self.problems = []
        self.file_tenants = {e.values["slug"] for e in config.entries(schema.TENANTS)}
        self.file_providers = {e.identity for e in config.entries(schema.PROVIDERS)}
        self.file_keys = {e.identity for e in config.api_keys()}

    def problem(self, entry, field, message):
        self.problems.append(Problem(entry.line_of(field), f"{entry.label}: {message}"))

    def run(self):
        for section in schema.SECTIONS[1:]:  # every section but tenants names its tenant
            for entry in self.config.entries(section):
                slug = entry.values["tenant"]
                if slug is not None and slug not in self.file_tenants and slug not in self.db.tenants:
                    self.problem(
                        entry, "tenant", f"unknown tenant {slug!r} (neither in the file nor in the database)"
                    )
                    continue
                if section is schema.ROUTES:
                    self.route(entry)
                elif section is schema.QUOTAS:
                    self.quota(entry)
                elif section is schema.GUARDRAILS:
                    self.guardrail(entry)
        if self.problems:
            raise ConfigError(self.config.source, self.problems)

    def provider_exists(self, key):
        return key in self.file_providers or key in self.db.providers

    def route(self, entry):
        slug, name = entry.values["tenant"], entry.values["provider"]
        if slug is not None and self.provider_exists((slug, name)):
            entry.provider_scope = slug
        elif self.provider_exists((None, name)):
            entry.provider_scope = None
        elif slug is None and any(n == name for _, n in [*self.file_providers, *self.db.providers]):
            self.problem(
                entry, "provider", f"a shared route needs a shared provider; {name!r} belongs to a tenant"
            )
            return
        else:
            where = f"tenant {slug}'s providers or the shared ones" if slug else "the shared providers"
            self.problem(
                entry,
                "provider",
                f"unknown provider {name!r} (looked in {where}, in the file and in the database)",
            )
            return
        if not in_scope(slug, self.tenant):
            return
        key = (entry.provider_scope, name)
        if key not in self.file_providers:
            if (
                self.prune
                and self.config.manages(schema.PROVIDERS)
                and in_scope(entry.provider_scope, self.tenant)
            ):
                self.problem(
                    entry,
                    "provider",
                    f"provider {name!r} is not in the file, so --prune would delete it: add it to providers",
                )
        elif self.tenant is not None and entry.provider_scope is None and key not in self.db.providers:
            self.problem(
                entry,
                "provider",
                f"the shared provider {name!r} is only in the file, and with "
                "--tenant shared objects are not applied: apply without --tenant first",
            )

    def quota(self, entry):
        slug, username, key_name = entry.values["tenant"], entry.values["user"], entry.values["key"]
        if username:
            user = User.objects.filter(username=username).select_related("tenant").first()
            if user is None:
                self.problem(entry, "user", f"unknown user {username!r}")
            elif user.tenant is None or user.tenant.slug != slug:
                self.problem(entry, "user", f"user {username!r} is not in tenant {slug}")
        if key_name:
            self.api_key(entry, "key", slug, key_name)

    def api_key(self, entry, field, slug, key_name):
        found = self.db.key_named(slug, key_name)
        if found is AMBIGUOUS:
            self.problem(
                entry,
                field,
                f"several keys of tenant {slug} are named {key_name!r}: "
                "give them different names in the admin first",
            )
        elif found is None and (slug, key_name) not in self.file_keys:
            self.problem(
                entry,
                field,
                f"unknown API key {key_name!r} in tenant {slug} (name it under "
                "the tenant's api_keys to create it)",
            )

    def guardrail(self, entry):
        slug = entry.values["tenant"]
        for key_name in entry.values["api_keys"]:
            self.api_key(entry, "api_keys", slug, key_name)
        for row in self.db.guardrails:
            if (slug_of(row.tenant), row.name) == entry.identity:
                # The file could neither describe this row's keys nor leave them as they are.
                prefixes = self.db.unnameable_keys(row)
                if prefixes:
                    self.problem(
                        entry,
                        "api_keys",
                        f"the guardrail in the database applies to the key {', '.join(prefixes)}, which the "
                        "file cannot name: give that key a name of its own in the admin first",
                    )


def resolve(config, db, *, tenant=None, prune=False):
    """Check every reference; note on each route which provider it means. Raises ConfigError."""
    _Resolver(config, db, tenant, prune).run()
