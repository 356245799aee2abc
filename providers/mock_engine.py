"""Deterministic OpenAI-format answers, for the built-in `mock` provider and the mock upstream server.

Behaviour comes from the provider's ``options`` merged with parameters in the
upstream model name (``mock-1?chunks=3&fail_status=503``), so one mock
provider can serve many test scenarios:

- ``reply``: the answer text (default: echoes the last user message)
- ``reply_chars``: the answer text repeated (or cut) to this many characters
- ``chunks``: number of content chunks in a stream (default 5)
- ``latency_ms``: wait before the answer / first chunk
- ``chunk_delay_ms``: wait between chunks
- ``fail_status``: answer every request with this HTTP status (``retry_after``: with that Retry-After)
- ``fail_after_chunks``: break a stream after this many chunks
- ``hang``: never answer; ``reset``: close the connection without answering (mock server only)
- ``reset_after_chunks``: reset the connection (RST) after this many chunks of a stream;
  ``reset_after_bytes``: after this many bytes of a plain answer's body (mock server only)
- ``stall_after_chunks``: send this many chunks of a stream, then nothing more, the
  connection kept open (mock server only)
- ``drip_ms``: send the answer (a plain body, or each event of a stream) ``drip_bytes``
  (default 16) bytes at a time, waiting this long between writes (mock server only)
- ``pad_bytes``: add that many bytes of filler to every chunk of a stream (field
  ``x_mock_padding``): large streams whose text, and so the proxy's count of it, stays small
- ``fail_first``: the faults above apply to the first N requests for this exact
  model name only, later ones succeed (mock server only: it counts requests)
- ``usage``: report usage (default true); false makes the proxy estimate it
- ``embedding_dims``: length of embedding vectors (default 8)
"""

import hashlib
import struct
import time
from urllib.parse import parse_qsl

from quotas.tokens import count_messages, count_prompt, count_text

_INT_OPTIONS = (
    "chunks",
    "latency_ms",
    "chunk_delay_ms",
    "fail_status",
    "fail_after_chunks",
    "embedding_dims",
    "hang",
    "reset",
    "fail_first",
    "reset_after_chunks",
    "reset_after_bytes",
    "stall_after_chunks",
    "drip_ms",
    "drip_bytes",
    "pad_bytes",
    "reply_chars",
)
# What ``fail_first`` turns off once its count of failed requests is spent.
FAULTS = (
    "fail_status",
    "retry_after",
    "fail_after_chunks",
    "hang",
    "reset",
    "reset_after_chunks",
    "reset_after_bytes",
    "stall_after_chunks",
)


def split_model(upstream_model: str, base_options: dict | None = None):
    """(model name, options) from ``name?key=value&...`` merged over ``base_options``."""
    name, _, query = upstream_model.partition("?")
    options = dict(base_options or {})
    for key, value in parse_qsl(query):
        options[key] = value
    for key in _INT_OPTIONS:
        if key in options:
            try:
                options[key] = int(options[key])
            except (TypeError, ValueError):
                options.pop(key)
    if isinstance(options.get("usage"), str):
        options["usage"] = options["usage"].lower() not in ("0", "false", "no")
    return name, options


def _last_user_text(messages):
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def reply_text(endpoint: str, body: dict, options: dict) -> str:
    text = _reply_text(endpoint, body, options)
    size = options.get("reply_chars")
    if size and text:
        text = (text * (size // len(text) + 1))[:size]
    return text


def _reply_text(endpoint: str, body: dict, options: dict) -> str:
    if "reply" in options:
        return str(options["reply"])
    if endpoint == "completions":
        prompt = body.get("prompt")
        said = prompt if isinstance(prompt, str) else str(prompt)
    else:
        said = _last_user_text(body.get("messages"))
    return f"Mock answer to: {said[:200]}" if said else "Mock answer."


def split_chunks(text: str, count: int) -> list[str]:
    """``count`` pieces (fewer only when the text is shorter) that join back to ``text``."""
    count = max(1, min(count, len(text) or 1))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _completion_id(body: dict) -> str:
    return "chatcmpl-mock" + hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()[:20]


def input_tokens(endpoint: str, body: dict) -> int:
    if endpoint == "chat":
        return count_messages(body.get("messages"))
    if endpoint == "completions":
        return count_prompt(body.get("prompt"))
    return count_prompt(body.get("input"))


def usage_block(endpoint, body, text):
    prompt = input_tokens(endpoint, body)
    completion = count_text(text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_completion(model: str, body: dict, options: dict) -> dict:
    text = reply_text("chat", body, options)
    answer = {
        "id": _completion_id(body),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "system_fingerprint": "fp_mock",
    }
    if options.get("usage", True):
        answer["usage"] = usage_block("chat", body, text)
    return answer


def text_completion(model: str, body: dict, options: dict) -> dict:
    text = reply_text("completions", body, options)
    answer = {
        "id": _completion_id(body).replace("chatcmpl", "cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
    }
    if options.get("usage", True):
        answer["usage"] = usage_block("completions", body, text)
    return answer


def _vector(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    values = []
    while len(values) < dims:
        seed = hashlib.sha256(seed).digest()
        values.extend(v / 2**32 for v in struct.unpack("8I", seed))
    return [round(v * 2 - 1, 6) for v in values[:dims]]


def embeddings(model: str, body: dict, options: dict) -> dict:
    raw = body.get("input")
    inputs = raw if isinstance(raw, list) and not all(isinstance(i, int) for i in raw) else [raw]
    dims = int(options.get("embedding_dims", 8))
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(str(item), dims)}
        for i, item in enumerate(inputs)
    ]
    tokens = count_prompt(raw)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def answer(endpoint: str, model: str, body: dict, options: dict) -> dict:
    if endpoint == "chat":
        return chat_completion(model, body, options)
    if endpoint == "completions":
        return text_completion(model, body, options)
    return embeddings(model, body, options)


def stream_chunks(endpoint: str, model: str, body: dict, options: dict) -> list[dict]:
    """The chunks of a streamed answer, the usage chunk last when asked for."""
    text = reply_text(endpoint, body, options)
    base_id = _completion_id(body)
    created = int(time.time())
    pieces = split_chunks(text, int(options.get("chunks", 5)))
    chunks = []
    if endpoint == "chat":

        def chunk(delta, finish=None):
            return {
                "id": base_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        chunks.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        chunks.extend(chunk({"content": piece}) for piece in pieces)
        chunks.append(chunk({}, "stop"))
    else:

        def chunk(piece, finish=None):
            return {
                "id": base_id.replace("chatcmpl", "cmpl"),
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}],
            }

        chunks.extend(chunk(piece) for piece in pieces)
        chunks.append(chunk("", "stop"))
    pad_bytes = options.get("pad_bytes")
    if pad_bytes:
        padding = "x" * pad_bytes  # one string shared by every chunk: the mock stays small
        chunks = [{**c, "x_mock_padding": padding} for c in chunks]
    stream_options = body.get("stream_options") or {}
    if options.get("usage", True) and stream_options.get("include_usage"):
        usage_chunk = dict(chunks[-1])
        usage_chunk["choices"] = []
        usage_chunk["usage"] = usage_block(endpoint, body, text)
        chunks.append(usage_chunk)
    return chunks
