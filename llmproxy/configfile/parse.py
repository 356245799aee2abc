"""From YAML text to checked entries, each with the line it came from.

The file is composed into YAML nodes (safe tags only) rather than loaded, so
that every problem can name its line; all problems are collected, not just the
first.
"""

from dataclasses import dataclass, field

import yaml

from llmproxy.configfile import schema
from llmproxy.configfile.errors import ConfigError, Problem
from llmproxy.guardrails.regex_timeout import UnsafePattern, check_pattern

VERSION = 1


@dataclass
class Entry:
    section: schema.Section
    line: int
    values: dict
    lines: dict = field(default_factory=dict)  # field name -> line of its value
    children: dict = field(default_factory=dict)  # nested section key -> [Entry]
    tenant: str | None = None  # for an API key: the tenant it is written under
    provider_scope: str | None = None  # for a route: its provider's tenant (None: shared), once resolved

    def line_of(self, name):
        return self.lines.get(name, self.line)

    @property
    def scope_tenant(self):
        """The slug of the tenant this entry belongs to; None for a shared one."""
        if self.section is schema.TENANTS:
            return self.values["slug"]
        return self.tenant if self.section is schema.API_KEYS else self.values["tenant"]

    @property
    def label(self):
        return describe(self.section, self.values)

    @property
    def identity(self):
        return identity(self.section, self.values, self.provider_scope)


def scope_text(slug):
    return f"tenant {slug}" if slug else "shared"


def describe(section, v):
    """How output and messages name an object, from its values in file terms."""
    if section is schema.TENANTS:
        return f"tenant {v['slug']}"
    if section is schema.PROVIDERS:
        return f"provider {v['name']} ({scope_text(v['tenant'])})"
    if section is schema.ROUTES:
        return f"route {v['model']} -> {v['provider']}:{v['upstream_model']} ({scope_text(v['tenant'])})"
    if section is schema.QUOTAS:
        target = {"tenant": "", "user": f" {v['user']}", "key": f" {v['key']}"}[v["scope"]]
        return f"quota {v['scope']}{target} {v['metric']}/{v['period']} ({scope_text(v['tenant'])})"
    if section is schema.MODEL_POLICIES:
        return f"model policy {v['model']} ({scope_text(v['tenant'])})"
    if section is schema.GUARDRAILS:
        return f"guardrail {v['name']} ({scope_text(v['tenant'])})"
    return f"API key {v['name']} ({scope_text(v['tenant'])})"


def identity(section, v, provider_scope=None):
    """What makes an object unique in the file, and matches an entry to its database row.

    A route's provider is part of it with the provider's scope (a tenant's own
    provider or a shared one of the same name), once that is resolved.
    """
    if section is schema.TENANTS:
        return v["slug"]
    if section is schema.PROVIDERS:
        return (v["tenant"], v["name"])
    if section is schema.ROUTES:
        return (v["tenant"], v["model"], (provider_scope, v["provider"]), v["upstream_model"])
    if section is schema.QUOTAS:
        return (v["tenant"], v["scope"], v["user"] or v["key"], v["metric"], v["period"])
    if section is schema.MODEL_POLICIES:
        return (v["tenant"], v["model"])
    return (v["tenant"], v["name"])  # a guardrail, an API key


@dataclass
class ConfigFile:
    source: str
    # Section key -> entries; a section missing from the file is None: that
    # kind is not managed by the file, and --prune leaves it alone.
    sections: dict

    def entries(self, section):
        return self.sections.get(section.key) or []

    def manages(self, section):
        return self.sections.get(section.key) is not None

    def api_keys(self):
        return [key for tenant in self.entries(schema.TENANTS) for key in tenant.children.get("api_keys", [])]


class _Reader:
    def __init__(self, text):
        self.problems = []
        self.loader = yaml.SafeLoader(text)

    def problem(self, line, message):
        self.problems.append(Problem(line, message))

    def value(self, node, _stack=()):
        """The Python value of a node; duplicate keys anywhere are problems."""
        if id(node) in _stack:
            self.problem(_line(node), "an alias refers to itself")
            return None
        stack = (*_stack, id(node))
        if isinstance(node, yaml.MappingNode):
            return {key: self.value(value_node, stack) for key, (_, value_node) in self.pairs(node).items()}
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, stack) for item in node.value]
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problem(_line(node), f"cannot read this value: {getattr(exc, 'problem', exc)}")
            return None

    def pairs(self, node):
        """A mapping's keys, each with its (key node, value node).

        Merge keys (<<: *defaults) are resolved the way yaml.safe_load does: the
        mapping's own keys win over merged ones. A key written twice is a problem.
        """
        own = {id(pair) for pair in node.value}
        try:
            self.loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.problem(_line(node), f"cannot merge: {getattr(exc, 'problem', exc)}")
            return {}
        result, written = {}, set()
        for pair in node.value:
            key_node, value_node = pair
            key = self.value(key_node)
            if not isinstance(key, str | int | float | bool | type(None)):
                self.problem(_line(key_node), "a mapping key must be a plain value")
                continue
            if id(pair) in own:
                if key in written:
                    self.problem(_line(key_node), f"duplicate key {key!r}")
                    continue
                written.add(key)
            result[key] = (key_node, value_node)
        return result

    def document(self):
        try:
            root = self.loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.problem(mark.line + 1 if mark else 1, f"not valid YAML: {exc.problem or exc.context}")
            return None
        except yaml.YAMLError as exc:
            self.problem(1, f"not valid YAML: {exc}")
            return None
        if root is None:
            self.problem(1, "the file is empty")
            return None
        if not isinstance(root, yaml.MappingNode):
            self.problem(_line(root), "expected a mapping with the keys " + _known_top_level())
            return None
        sections = {}
        for key, (key_node, value_node) in self.pairs(root).items():
            if key == "version":
                if self.value(value_node) != VERSION:
                    self.problem(_line(value_node), f"version: this proxy reads version {VERSION}")
            elif (section := next((s for s in schema.SECTIONS if s.key == key), None)) is not None:
                sections[key] = self.entries(section, value_node)
            else:
                self.problem(_line(key_node), f"unknown key {key!r}; the file has " + _known_top_level())
        return sections

    def entries(self, section, node, tenant=None):
        if isinstance(node, yaml.ScalarNode) and self.value(node) is None:
            return []  # "quotas:" with nothing after it: an empty list
        if not isinstance(node, yaml.SequenceNode):
            self.problem(_line(node), f"{section.key}: expected a list of {section.noun} entries")
            return []
        entries = []
        for index, item in enumerate(node.value, 1):
            entry = self.entry(section, item, index, tenant)
            if entry is not None:
                entries.append(entry)
        return entries

    def entry(self, section, node, index, tenant):
        if not isinstance(node, yaml.MappingNode):
            self.problem(_line(node), f"{section.key}: entry {index} should be a mapping of fields")
            return None
        entry = Entry(section, _line(node), {}, tenant=tenant)
        raw = {}
        refused = dict(section.refused)
        nested = {s.key: s for s in section.nested}
        for name, (key_node, value_node) in self.pairs(node).items():
            line = _line(value_node)
            if not isinstance(name, str):
                self.problem(_line(key_node), f"{section.noun} entry {index}: a field name is a string")
                continue
            entry.lines[name] = line
            if name in refused:
                self.problem(line, f"{section.noun} entry {index}: {name}: {refused[name]}")
            elif name in nested:
                raw[name] = value_node
            elif section.field(name) is None:
                known = ", ".join([fd.name for fd in section.fields] + list(nested))
                self.problem(
                    _line(key_node), f"{section.noun} entry {index}: unknown field {name!r} (known: {known})"
                )
            else:
                raw[name] = self.value(value_node)
        ok = True
        for fd in section.fields:
            if fd.name not in raw:
                if fd.required:
                    self.problem(entry.line, f"{section.noun} entry {index}: {fd.name} is required")
                    ok = False
                else:
                    entry.values[fd.name] = section.default(fd)
                continue
            try:
                entry.values[fd.name] = fd.check(raw[fd.name])
            except ValueError as exc:
                self.problem(entry.lines[fd.name], f"{section.noun} entry {index}: {fd.name}: {exc}")
                ok = False
        if section is schema.API_KEYS:
            entry.values["tenant"] = tenant
        if ok:
            for problem in _cross_field_problems(entry):
                self.problem(entry.line_of(problem[0]), f"{entry.label}: {problem[1]}")
        for key, child_section in nested.items():
            slug = entry.values.get("slug")
            entry.children[key] = self.entries(child_section, raw[key], slug) if key in raw else []
        return entry if ok else None


def _cross_field_problems(entry):
    v = entry.values
    if entry.section is schema.PROVIDERS and v["kind"] != "mock" and not v["base_url"]:
        yield "kind", f"base_url is required for the kind {v['kind']}"
    if entry.section is schema.QUOTAS:
        wanted = {"tenant": (), "user": ("user",), "key": ("key",)}[v["scope"]]
        for target in ("user", "key"):
            if target in wanted and not v[target]:
                yield "scope", f"a {v['scope']}-scoped quota names its {target}"
            if target not in wanted and v[target]:
                yield target, f"{target} is given but the scope is {v['scope']}"
        if v["metric"] != "cost" and v["limit"] != int(v["limit"]):
            yield "limit", f"a {v['metric']} limit is a whole number"
    if entry.section is schema.MODEL_POLICIES and v["model"] in v["fallback_models"]:
        yield "fallback_models", "a model cannot be its own fallback"
    if entry.section is schema.GUARDRAILS:
        yield from _guardrail_problems(v)


def _guardrail_problems(v):
    if v["detector"] == "regex":
        if not v["pattern"]:
            yield "detector", "the regex detector needs a pattern"
        else:
            try:
                # The check the model makes when saved: compiles, and does not backtrack catastrophically.
                check_pattern(v["pattern"])
            except UnsafePattern as exc:
                yield "pattern", f"pattern refused: {exc}"
    elif v["pattern"]:
        yield "pattern", "only the regex detector takes a pattern"
    if v["detector"] == "wordlist":
        if not v["words"]:
            yield "detector", "the wordlist detector needs words"
    elif v["words"]:
        yield "words", "only the wordlist detector takes words"


def _line(node):
    return node.start_mark.line + 1


def _known_top_level():
    return ", ".join(["version", *(s.key for s in schema.SECTIONS)])


def _duplicate_problems(config):
    lists = [config.entries(s) for s in schema.SECTIONS]
    lists += [tenant.children.get("api_keys", []) for tenant in config.entries(schema.TENANTS)]
    for entries in lists:
        seen = {}
        for entry in entries:
            # A route's provider is named, not yet resolved: the same name twice is one provider.
            key = identity(entry.section, entry.values)
            if key in seen:
                yield Problem(entry.line, f"duplicate {entry.label}: first at line {seen[key]}")
            else:
                seen[key] = entry.line


def parse(text, source):
    reader = _Reader(text)
    try:
        sections = reader.document()
    finally:
        reader.loader.dispose()
    config = ConfigFile(source, sections or {})
    problems = reader.problems + list(_duplicate_problems(config))
    if problems:
        raise ConfigError(source, problems)
    return config
