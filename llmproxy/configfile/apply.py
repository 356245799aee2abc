"""Make the database match a config file: one transaction, every change audited."""

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from keys.services import api_key_create
from llmproxy.configfile import schema
from llmproxy.configfile.diff import plan
from llmproxy.configfile.errors import ConfigError, Problem, ScopeError
from llmproxy.configfile.fields import plain_number
from llmproxy.configfile.parse import parse
from llmproxy.configfile.resolve import in_scope, resolve
from llmproxy.configfile.state import DatabaseState
from tenants.models import User


def show(value):
    """A value in the printed output: as in the file, quoted only when it would not read plainly."""
    if isinstance(value, Decimal):
        return plain_number(value)
    if isinstance(value, str) and value and value.strip() == value:
        return value
    return json.dumps(value)


def _recorded(section, name, value):
    """A value as the audit log keeps it (JSON); of a field kept out of the log, only whether it is set."""
    fd = section.field(name)
    if fd is not None and not fd.audited:
        return None if value is None else "(not recorded)"
    return plain_number(value) if isinstance(value, Decimal) else value


@dataclass
class Report:
    dry_run: bool
    lines: list = field(default_factory=list)  # what was (or would be) done, object by object
    counts: Counter = field(default_factory=Counter)
    left_out: int = 0  # entries outside --tenant

    def summary(self):
        if not self.counts:
            return "no changes"
        parts = ", ".join(
            f"{self.counts[action]} {done}"
            for action, done in (("create", "created"), ("update", "changed"), ("delete", "deleted"))
        )
        return f"dry run, nothing written: would have {parts}" if self.dry_run else parts


class _Executor:
    def __init__(self, db, actor, report, source):
        self.db, self.actor, self.report, self.source = db, actor, report, source
        self.tenants = dict(db.tenants)
        self.providers = dict(db.providers)
        self.keys = {}

    def run(self, changes):
        for change in changes:
            try:
                getattr(self, change.action)(change)
            except ValidationError as exc:
                # A model's own check the file's checks did not foresee: still name the entry's line.
                line = change.entry.line if change.entry else 0
                message = "; ".join(m.rstrip(".") for m in exc.messages)
                raise ConfigError(self.source, [Problem(line, f"{change.label}: {message}")])
            self.report.counts[change.action] += 1

    def tenant(self, slug):
        return self.tenants[slug] if slug else None

    def audit(self, change, obj, changed):
        tenant = obj if change.section is schema.TENANTS else obj.tenant
        metadata = {
            "changed": {
                name: [_recorded(change.section, name, old), _recorded(change.section, name, new)]
                for name, (old, new) in changed.items()
            }
        }
        audit_record(
            actor=self.actor,
            action=f"{change.section.audit_name}.{change.action}",
            target=obj,
            tenant=tenant,
            metadata=metadata,
        )

    def save(self, obj, **kwargs):
        # A provider's base URL was checked when the file was read, more leniently
        # than URLField (a Compose service name is a fine host).
        obj.full_clean(exclude=["base_url"] if isinstance(obj, schema.PROVIDERS.model) else None)
        obj.save(**kwargs)

    def create(self, change):
        section, entry, values = change.section, change.entry, change.entry.values
        self.report.lines.append(f"create {change.label}")
        if section is schema.API_KEYS:
            return self.create_key(entry)
        obj = section.model(**{fd.attr: values[fd.name] for fd in section.columns})
        if section is not schema.TENANTS:
            obj.tenant = self.tenant(values["tenant"])
        if section is schema.ROUTES:
            obj.provider = self.providers[(entry.provider_scope, values["provider"])]
        if section is schema.QUOTAS:
            obj.user = User.objects.get(username=values["user"]) if values["user"] else None
            obj.api_key = self.api_key(values["tenant"], values["key"]) if values["key"] else None
        self.save(obj)
        self.set_related(section, obj, values, [fd.name for fd in section.fields if fd.related])
        if section is schema.TENANTS:
            self.tenants[obj.slug] = obj
        if section is schema.PROVIDERS:
            self.providers[entry.identity] = obj
        self.audit(change, obj, {name: (None, value) for name, value in values.items()})

    def set_related(self, section, obj, values, names):
        # Only API keys so far, named within the row's tenant; keys the file creates are in self.keys.
        for name in names:
            fd = section.field(name)
            getattr(obj, fd.related).set([self.api_key(values["tenant"], key) for key in values[name]])

    def api_key(self, slug, name):
        return self.keys.get((slug, name)) or self.db.key_named(slug, name)

    def create_key(self, entry):
        values = entry.values
        expires_at = timezone.now() + values["expires_in"] if values["expires_in"] else None
        api_key, plain = api_key_create(
            tenant=self.tenant(values["tenant"]),
            name=values["name"],
            allowed_models=values["models"],
            expires_at=expires_at,
            actor=self.actor,
        )
        self.keys[entry.identity] = api_key
        if not self.report.dry_run:
            # Shown once, like create_api_key: the prefix, then the whole key alone on a line.
            self.report.lines += [f"prefix: {api_key.prefix}", plain]

    def update(self, change):
        obj = change.obj
        attrs = {fd.name: fd.attr for fd in change.section.columns}
        columns = [name for name in change.changed if name in attrs]
        for name in columns:
            setattr(obj, attrs[name], change.changed[name][1])
        # Saved even when only a related set changed: updated_at says when the row last changed.
        self.save(obj, update_fields=[attrs[name] for name in columns] + ["updated_at"])
        related = [name for name in change.changed if name not in attrs]
        self.set_related(change.section, obj, change.entry.values, related)
        self.audit(change, obj, change.changed)
        self.report.lines.append(f"update {change.label}")
        self.report.lines += [
            f"  {name}: {show(old)} -> {show(new)}" for name, (old, new) in change.changed.items()
        ]

    def delete(self, change):
        obj = change.obj
        values = self.db.values(change.section, obj)
        self.audit(change, obj, {name: (value, None) for name, value in values.items()})
        obj.delete()
        self.report.lines.append(f"delete {change.label}" + (f" ({change.note})" if change.note else ""))


def _left_out(config, tenant):
    if tenant is None:
        return 0
    entries = [e for section in schema.SECTIONS for e in config.entries(section)] + config.api_keys()
    return sum(not in_scope(e.scope_tenant, tenant) for e in entries)


def apply_config(text, *, source, tenant=None, prune=False, dry_run=False, actor="config"):
    """Apply the file; return a Report. Raises ConfigError (nothing written) on a bad file."""
    config = parse(text, source)
    report = Report(dry_run=dry_run, left_out=_left_out(config, tenant))
    with transaction.atomic():
        db = DatabaseState()
        file_tenants = {e.values["slug"] for e in config.entries(schema.TENANTS)}
        if tenant is not None and tenant not in db.tenants and tenant not in file_tenants:
            raise ScopeError(f"unknown tenant {tenant!r} (neither in the file nor in the database)")
        resolve(config, db, tenant=tenant, prune=prune)
        # A dry run goes through the same writes, so it meets the same checks, and is rolled back.
        _Executor(db, actor, report, config.source).run(plan(config, db, tenant=tenant, prune=prune))
        if dry_run:
            transaction.set_rollback(True)
    return report
