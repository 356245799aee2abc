"""The exact-match response cache: per tenant, streaming-aware, stampede-proof.

Key: the tenant, its cache generation (bumped by clear_cache, so clearing
works across processes without scanning), the endpoint, the public model and
the request body in canonical form — keys sorted, parameters that do not
change the output left out, defaults made explicit by dropping them.

Value: the answer as one OpenAI JSON object, however it was produced; a
streamed answer is assembled from its chunks once complete, and a hit is
replayed as chunks to a streaming client.

Stampede: the first miss takes a lock (SET NX with an expiry in Redis, an
asyncio.Event in-process); identical requests arriving meanwhile wait for the
answer (bounded by LLMPROXY_CACHE_LOCK_SECONDS) instead of calling upstream.

Redis down: the cache is an optimisation, so requests go upstream as misses.
As the limiter and the breakers do, Redis is not asked again for a second
after a failure (an unreachable host would otherwise cost each request its
connect timeouts) and the trouble is logged once a minute, not per request.
"""

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict

import orjson
from django.conf import settings

from llmproxy.redis_client import get_redis

logger = logging.getLogger(__name__)

# Fields that do not change the answer, or that only shape its delivery.
_DELIVERY_ONLY = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier"})
# Defaults OpenAI applies when a field is absent: the same request either way.
_DEFAULTS = {
    "temperature": 1,
    "top_p": 1,
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "echo": False,
    "best_of": 1,
    "encoding_format": "float",
    "parallel_tool_calls": True,
}
_POLL_SECONDS = 0.02
_REDIS_RETRY_SECONDS = 1.0
_WARN_EVERY_SECONDS = 60.0
_AWAY = object()  # Redis failed a moment ago: skip the cache
_redis_retry_at = 0.0
_warned_at = -math.inf


def _redis():
    """The running loop's Redis client, None in embedded mode, or _AWAY just after Redis failed."""
    if time.monotonic() < _redis_retry_at:
        return _AWAY
    return get_redis()


def _redis_failed(what, exc):
    global _redis_retry_at, _warned_at
    now = time.monotonic()
    _redis_retry_at = now + _REDIS_RETRY_SECONDS
    if now - _warned_at >= _WARN_EVERY_SECONDS:
        _warned_at = now
        logger.warning("response cache %s failed; answering without the cache meanwhile: %r", what, exc)


def cacheable(body: dict, tenant) -> bool:
    if tenant.cache_ttl_seconds <= 0:
        return False
    if tenant.cache_skip_nondeterministic:
        temperature = body.get("temperature", 1)
        if (isinstance(temperature, (int, float)) and temperature > 0) or (body.get("n") or 1) > 1:
            return False
    return True


def cache_key(tenant, endpoint: str, model: str, body: dict) -> str:
    canonical = {k: v for k, v in body.items() if k not in _DELIVERY_ONLY and _DEFAULTS.get(k, ...) != v}
    canonical["model"] = model
    digest = hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
    prefix = settings.LLMPROXY_REDIS_KEY_PREFIX
    return f"{prefix}:rc:{{t{tenant.id}}}:{tenant.cache_generation}:{endpoint}:{digest}"


def request_directive(headers: dict) -> str:
    """'no-store' (skip lookup and storing), 'no-cache' (skip lookup, store) or ''."""
    values = []
    for name in ("x-llmproxy-cache", "cache-control"):
        value = headers.get(name)
        if value:
            values.extend(v.strip().lower() for v in value.decode("latin-1").split(","))
    if "no-store" in values:
        return "no-store"
    if "no-cache" in values:
        return "no-cache"
    return ""


class _LocalStore:
    """In-process twin of the Redis store (embedded mode): bounded LRU with expiries."""

    def __init__(self, max_entries=10_000):
        self.max_entries = max_entries
        self.entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.locks: dict[str, asyncio.Event] = {}

    def get(self, key):
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return entry[1]

    def set(self, key, value: bytes, ttl: int):
        self.entries[key] = (time.monotonic() + ttl, value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)


_local = _LocalStore()


async def lookup(key: str) -> dict | None:
    redis = _redis()
    if redis is _AWAY:
        return None
    try:
        raw = await redis.get(key) if redis is not None else _local.get(key)
    except Exception as exc:  # the cache is an optimisation: never fail a request for it
        _redis_failed("lookup", exc)
        return None
    return orjson.loads(raw) if raw else None


async def store(key: str, answer: dict, ttl: int):
    raw = orjson.dumps(answer)
    redis = _redis()
    if redis is _AWAY:
        return
    try:
        if redis is not None:
            await redis.set(key, raw, ex=ttl)
        else:
            _local.set(key, raw, ttl)
    except Exception as exc:
        _redis_failed("store", exc)


class Lock:
    """The right to compute one key's answer; others wait for it (bounded) and then look again."""

    def __init__(self, key: str):
        self.key = key + ":lock"
        self.held = False
        self._event = None

    async def acquire_or_wait(self, wait_seconds: float) -> bool:
        """True when we hold the lock; False after waiting for the holder to finish (or give up)."""
        redis = _redis()
        if redis is _AWAY:
            return False  # no one to wait for: the caller looks up (a miss) and goes upstream
        if redis is None:
            event = _local.locks.get(self.key)
            if event is None:
                self._event = _local.locks[self.key] = asyncio.Event()
                self.held = True
                return True
            try:
                async with asyncio.timeout(wait_seconds):
                    await event.wait()
            except TimeoutError:
                pass
            return False
        try:
            if await redis.set(self.key, b"1", nx=True, ex=max(1, int(wait_seconds))):
                self.held = True
                return True
            deadline = time.monotonic() + wait_seconds
            while time.monotonic() < deadline and await redis.exists(self.key):
                await asyncio.sleep(_POLL_SECONDS)
        except Exception as exc:
            _redis_failed("lock", exc)
        return False

    async def release(self):
        if not self.held:
            return
        self.held = False
        redis = _redis()
        if redis is _AWAY:
            return  # the lock expires by itself
        if redis is None:
            _local.locks.pop(self.key, None)
            if self._event is not None:
                self._event.set()
            return
        try:
            await redis.delete(self.key)
        except Exception as exc:
            _redis_failed("unlock", exc)


class StreamAssembler:
    """Rebuilds the plain answer of a streamed chat or text completion from its chunks."""

    def __init__(self):
        self.base = None
        self.choices: dict[int, dict] = {}
        self.usage = None

    def add(self, chunk: dict):
        if self.base is None:
            self.base = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
            self.base["object"] = (
                "chat.completion"
                if chunk.get("object") == "chat.completion.chunk"
                else chunk.get("object", "text_completion")
            )
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            state = self.choices.setdefault(
                index,
                {
                    "index": index,
                    "content": [],
                    "role": "assistant",
                    "tool_calls": {},
                    "finish_reason": None,
                    "text": [],
                },
            )
            if choice.get("finish_reason"):
                state["finish_reason"] = choice["finish_reason"]
            if isinstance(choice.get("text"), str):
                state["text"].append(choice["text"])
            delta = choice.get("delta") or {}
            if delta.get("role"):
                state["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                state["content"].append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = state["tool_calls"].setdefault(
                    call.get("index", 0),
                    {"id": call.get("id"), "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""

    def answer(self) -> dict | None:
        if self.base is None:
            return None
        answer = dict(self.base)
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            if answer["object"] == "chat.completion":
                message = {"role": state["role"], "content": "".join(state["content"]) or None}
                if state["tool_calls"]:
                    message["tool_calls"] = [state["tool_calls"][i] for i in sorted(state["tool_calls"])]
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": state["finish_reason"],
                    }
                )
            else:
                choices.append(
                    {
                        "index": index,
                        "text": "".join(state["text"]),
                        "logprobs": None,
                        "finish_reason": state["finish_reason"],
                    }
                )
        answer["choices"] = choices
        if self.usage:
            answer["usage"] = self.usage
        return answer


def replay_chunks(answer: dict, include_usage: bool, pieces: int = 4) -> list[dict]:
    """A cached plain answer as the chunks a streaming client expects."""
    base = {k: answer[k] for k in ("id", "created", "model", "system_fingerprint") if k in answer}
    chat = answer.get("object") == "chat.completion"
    base["object"] = "chat.completion.chunk" if chat else "text_completion"
    chunks = []
    for choice in answer.get("choices") or ():
        index = choice.get("index", 0)
        if chat:
            message = choice.get("message") or {}
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": index,
                            "delta": {"role": message.get("role", "assistant"), "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                }
            )
            text = message.get("content") or ""
            for piece in _split(text, pieces):
                chunks.append(
                    {
                        **base,
                        "choices": [
                            {
                                "index": index,
                                "delta": {"content": piece},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            for i, call in enumerate(message.get("tool_calls") or ()):
                chunks.append(
                    {
                        **base,
                        "choices": [
                            {
                                "index": index,
                                "delta": {"tool_calls": [{**call, "index": i}]},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": index,
                            "delta": {},
                            "logprobs": None,
                            "finish_reason": choice.get("finish_reason"),
                        }
                    ],
                }
            )
        else:
            for piece in _split(choice.get("text") or "", pieces):
                chunks.append(
                    {
                        **base,
                        "choices": [{"index": index, "text": piece, "logprobs": None, "finish_reason": None}],
                    }
                )
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": index,
                            "text": "",
                            "logprobs": None,
                            "finish_reason": choice.get("finish_reason"),
                        }
                    ],
                }
            )
    if include_usage and answer.get("usage"):
        chunks.append({**base, "choices": [], "usage": answer["usage"]})
    return chunks


def _split(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]
