"""A tenant's guardrails compiled for the hot path, and what one request does with them.

``compile_tenant`` turns a tenant's active Guardrail rows into Rules (each
with its detector compiled once). ``TenantRules.select(key_id, model)`` picks
the rules that apply to one key and model, memoised, so a request pays a
dict lookup for it. A ``RequestGuard`` then applies them:

- ``check_request``: request-direction rules on the prompt texts of an
  OpenAI chat / completions / embeddings payload; a block raises
  ``GuardrailBlocked`` (a 400 GatewayError), masks give a new payload (the
  client's is not modified), flags are recorded;
- ``check_anthropic_request``: the same on an Anthropic Messages request;
- ``check_answer``: response-direction rules on a plain answer, in place;
- ``check_anthropic_answer``: the same on an Anthropic message (/v1/messages);
- ``stream``: a ChunkMasker for a streamed answer (stream_mask.py);
- ``anthropic_stream``: an EventMasker for a streamed Anthropic message.

A rule in shadow mode never changes or stops anything: it records the hit it
would have had. Hits go to Prometheus at once and to ``hits`` for the usage
record (one per guardrail and request).
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from llmproxy.gateway.errors import GatewayError
from llmproxy.guardrails import detectors
from llmproxy.guardrails.hits import HITS, REGEX_TIMEOUTS, Hit
from llmproxy.guardrails.regex_timeout import RegexTimeout

logger = logging.getLogger(__name__)

BLOCK, MASK, FLAG = "block", "mask", "flag"
REQUEST, RESPONSE = "request", "response"
# Blocks first: a blocked request needs no masking.
_ACTION_ORDER = {BLOCK: 0, MASK: 1, FLAG: 2}
_MAX_SELECTIONS = 10_000


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    id: int
    name: str
    detector: detectors.Detector
    action: str
    shadow: bool = False
    on_request: bool = True
    on_response: bool = True
    key_ids: frozenset = frozenset()  # empty: every key of the tenant
    models: frozenset = frozenset()  # empty: every model
    tenant: str = ""  # the tenant's slug, for metric labels

    @property
    def blocks(self):
        return self.action == BLOCK and not self.shadow

    @property
    def masks(self):
        return self.action == MASK and not self.shadow

    def applies_to(self, key_id, model):
        return (not self.key_ids or key_id in self.key_ids) and (not self.models or model in self.models)

    def find(self, text: str, pos: int = 0) -> list:
        """The rule's matches; an operator regex that runs out of time counts as no match (and is logged)."""
        try:
            return self.detector.find(text, pos)
        except RegexTimeout:
            _regex_timed_out(self)
            return []


_last_timeout_log: dict = {}


def _regex_timed_out(rule):
    REGEX_TIMEOUTS.labels(rule.tenant, rule.name).inc()
    now = time.monotonic()
    if now - _last_timeout_log.get(rule.id, 0.0) > 60:
        _last_timeout_log[rule.id] = now
        logger.warning(
            "guardrail %s (id %s): regular expression cut off by its time bound; rule skipped",
            rule.name,
            rule.id,
        )


class GuardrailBlocked(GatewayError):
    """A 400 in the client's error shape, naming the rule that refused the request or stopped the answer."""

    def __init__(self, rule: Rule, direction: str):
        what = "request" if direction == REQUEST else "answer"
        super().__init__(
            400,
            f"The {what} was blocked by guardrail '{rule.name}' ({rule.detector.kind}).",
            code="guardrail_blocked",
        )
        self.rule = rule
        self.direction = direction


class Selection:
    """The rules of one tenant that apply to one key and model, by direction."""

    __slots__ = ("request", "response")

    def __init__(self, rules):
        self.request = tuple(r for r in rules if r.on_request)
        self.response = tuple(r for r in rules if r.on_response)


class TenantRules:
    __slots__ = ("tenant_id", "slug", "rules", "_selections")

    def __init__(self, tenant_id: int, slug: str, rules):
        self.tenant_id = tenant_id
        self.slug = slug
        self.rules = tuple(sorted(rules, key=lambda r: (_ACTION_ORDER[r.action], r.name)))
        self._selections: dict = {}

    def select(self, key_id, model) -> Selection | None:
        try:
            return self._selections[(key_id, model)]
        except KeyError:
            pass
        rules = [r for r in self.rules if r.applies_to(key_id, model)]
        selection = Selection(rules) if rules else None
        if len(self._selections) >= _MAX_SELECTIONS:
            self._selections.clear()
        self._selections[(key_id, model)] = selection
        return selection


def compile_rule(guardrail, key_ids=(), tenant="") -> Rule:
    """A Rule from a Guardrail row (its api_keys ids given, to avoid a query per row)."""
    kind = guardrail.detector
    if kind == "regex":
        detector = detectors.regex_detector(guardrail.pattern)
    elif kind == "wordlist":
        detector = detectors.wordlist_detector(guardrail.words or ())
    else:
        detector = detectors.BUILT_IN[kind]
    return Rule(
        id=guardrail.id,
        name=guardrail.name,
        detector=detector,
        action=guardrail.action,
        shadow=guardrail.shadow,
        on_request=guardrail.direction in (REQUEST, "both"),
        on_response=guardrail.direction in (RESPONSE, "both"),
        key_ids=frozenset(key_ids),
        models=frozenset(m for m in guardrail.models or () if isinstance(m, str)),
        tenant=tenant,
    )


def compile_tenant(tenant_id: int, slug: str, guardrails) -> TenantRules | None:
    """``guardrails``: (Guardrail, key ids) pairs. None when nothing applies (the common, free case)."""
    rules = []
    for guardrail, key_ids in guardrails:
        try:
            rules.append(compile_rule(guardrail, key_ids, slug))
        except Exception:
            # Saved around validation (a raw UPDATE, a fixture): skip it, keep the others working.
            logger.exception("guardrail %s (id %s) does not compile; skipped", guardrail.name, guardrail.id)
    return TenantRules(tenant_id, slug, rules) if rules else None


class RequestGuard:
    """One request's guardrails: its rules, the hits so far, and the checks the gateway calls."""

    __slots__ = ("selection", "tenant_id", "tenant_slug", "request_id", "key_prefix", "_hits")

    def __init__(self, selection: Selection, *, tenant_id, tenant_slug, request_id="", key_prefix=""):
        self.selection = selection
        self.tenant_id = tenant_id
        self.tenant_slug = tenant_slug
        self.request_id = request_id
        self.key_prefix = key_prefix
        self._hits: dict = {}

    @property
    def hits(self) -> list[Hit]:
        return list(self._hits.values())

    @property
    def checks_answers(self) -> bool:
        return bool(self.selection.response)

    def hit(self, rule: Rule, direction: str):
        """Record that ``rule`` matched; raise GuardrailBlocked if it blocks."""
        if rule.id not in self._hits:
            self._hits[rule.id] = Hit(
                guardrail_id=rule.id,
                tenant_id=self.tenant_id,
                rule=rule.name,
                detector=rule.detector.kind,
                action=rule.action,
                shadow=rule.shadow,
                direction=direction,
                request_id=self.request_id,
                key_prefix=self.key_prefix,
                at=datetime.now(UTC),
            )
            HITS.labels(self.tenant_slug, rule.name, rule.action, "true" if rule.shadow else "false").inc()
        if rule.blocks:
            raise GuardrailBlocked(rule, direction)

    # --- requests -----------------------------------------------------------------------

    def check_request(self, endpoint: str, payload: dict) -> dict:
        """The payload to send upstream: ``payload`` itself, or a masked copy. Raises GuardrailBlocked."""
        rules = self.selection.request
        if not rules:
            return payload
        return map_request_texts(endpoint, payload, lambda text: self._scan(rules, text, REQUEST))

    def check_anthropic_request(self, body: dict) -> dict:
        """The same for an Anthropic Messages request (/v1/messages passed through to an Anthropic route)."""
        rules = self.selection.request
        if not rules:
            return body
        return map_anthropic_texts(body, lambda text: self._scan(rules, text, REQUEST))

    def _scan(self, rules, text: str, direction: str) -> str:
        found: dict = {}  # detector -> spans: rules sharing a built-in detector scan once
        masks = []
        for rule in rules:
            spans = found.get(rule.detector)
            if spans is None:
                spans = found[rule.detector] = rule.find(text)
            if not spans:
                continue
            self.hit(rule, direction)
            if rule.masks:
                label = rule.detector.label
                masks.extend((start, end, label) for start, end in spans)
        return detectors.redact(text, masks)

    # --- answers ------------------------------------------------------------------------

    def check_answer(self, endpoint: str, answer: dict):
        """Mask a plain answer's texts in place. Raises GuardrailBlocked."""
        rules = self.selection.response
        if not rules or not isinstance(answer, dict):
            return
        for choice in answer.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                message["content"] = self._scan(rules, message["content"], RESPONSE)
            elif isinstance(choice.get("text"), str):
                choice["text"] = self._scan(rules, choice["text"], RESPONSE)

    def check_anthropic_answer(self, message: dict):
        """Mask an Anthropic message's text blocks in place. Raises GuardrailBlocked."""
        rules = self.selection.response
        if not rules or not isinstance(message, dict) or not isinstance(message.get("content"), list):
            return
        content = message["content"]
        for i, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                text = self._scan(rules, block["text"], RESPONSE)
                if text is not block["text"]:
                    content[i] = {**block, "text": text}

    def stream(self, endpoint: str):
        """A ChunkMasker for this request's streamed answer, or None when no rule looks at answers."""
        if not self.selection.response:
            return None
        from llmproxy.guardrails.stream_mask import ChunkMasker

        return ChunkMasker(
            self.selection.response, lambda rule: self.hit(rule, RESPONSE), chat=endpoint == "chat"
        )

    def anthropic_stream(self):
        """An EventMasker for a streamed Anthropic message, or None when no rule looks at answers."""
        if not self.selection.response:
            return None
        from llmproxy.guardrails.stream_mask import EventMasker

        return EventMasker(self.selection.response, lambda rule: self.hit(rule, RESPONSE))


# --- the texts of a request ------------------------------------------------------------------


def map_request_texts(endpoint: str, payload: dict, fn) -> dict:
    """``payload`` with ``fn`` applied to each prompt text; copies only what changed.

    Chat: each message's string content and text parts; completions: ``prompt``;
    embeddings: ``input`` (strings; token arrays carry no text to check).
    """
    if endpoint == "chat":
        messages = payload.get("messages")
        new = _map_messages(messages, fn)
        return payload if new is messages else {**payload, "messages": new}
    field = "prompt" if endpoint == "completions" else "input"
    value = payload.get(field)
    new = _map_value(value, fn)
    return payload if new is value else {**payload, field: new}


def map_anthropic_texts(body: dict, fn) -> dict:
    """An Anthropic Messages request with ``fn`` applied to its system prompt and text blocks."""
    messages = body.get("messages")
    new_messages = _map_messages(messages, fn)
    system = body.get("system")
    if isinstance(system, str):
        new_system = fn(system)
    elif isinstance(system, list):
        new_system = _map_list(system, lambda block: _map_part(block, fn))
    else:
        new_system = system
    if new_messages is messages and new_system is system:
        return body
    body = {**body, "messages": new_messages}
    if system is not None:
        body["system"] = new_system
    return body


def _map_value(value, fn):
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return _map_list(value, lambda item: fn(item) if isinstance(item, str) else item)
    return value


def _map_list(items, fn):
    out = None
    for i, item in enumerate(items):
        new = fn(item)
        if new is not item:
            if out is None:
                out = list(items)
            out[i] = new
    return items if out is None else out


def _map_messages(messages, fn):
    return _map_list(messages, lambda m: _map_message(m, fn)) if isinstance(messages, list) else messages


def _map_message(message, fn):
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    if isinstance(content, str):
        new = fn(content)
    elif isinstance(content, list):
        new = _map_list(content, lambda part: _map_part(part, fn))
    else:
        return message
    return message if new is content else {**message, "content": new}


def _map_part(part, fn):
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        text = fn(part["text"])
        return part if text is part["text"] else {**part, "text": text}
    return part
