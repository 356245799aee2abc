"""Anthropic's Messages format -> OpenAI's chat format.

- ``chat_request``: a /v1/messages request, for a route that speaks OpenAI.
- ``chat_completion`` and ``ChunkStream``: an Anthropic upstream's answer (plain, or stream
  events as they arrive), for the gateway's OpenAI-shaped path (the ``anthropic`` adapter).
"""

import time

from providers.translate.common import TranslationError, json_text

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# --- requests ----------------------------------------------------------------------------------
def chat_request(body: dict) -> dict:
    messages = []
    system = system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body.get("messages") or ()):
        if message.get("role") == "assistant":
            messages.append(_assistant_message(message.get("content"), i))
        else:
            messages.extend(_user_messages(message.get("content"), i))
    chat = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("stop_sequences"):
        chat["stop"] = list(body["stop_sequences"])
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        chat["user"] = user
    if body.get("tools"):
        chat["tools"] = [_tool(tool, i) for i, tool in enumerate(body["tools"])]
        chat.update(_tool_choice(body.get("tool_choice")))
    return chat


def system_text(system) -> str:
    if isinstance(system, list):
        return "\n\n".join(block.get("text", "") for block in system if isinstance(block, dict))
    return system or ""


def _user_messages(content, i) -> list[dict]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    # OpenAI wants each tool result as its own message right after the assistant's calls,
    # so they go first and the rest of the turn follows as one user message.
    results, parts = [], []
    for j, block in enumerate(content or ()):
        kind = block.get("type")
        where = f"messages[{i}].content[{j}]"
        if kind == "tool_result":
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id"),
                    "content": _tool_result_text(block.get("content"), where),
                }
            )
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image(block.get("source") or {}, where))
        elif kind == "document":
            parts.append(_document(block.get("source") or {}, where))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise TranslationError(
                f"{where}: the block type '{kind}' is not supported by this model's provider."
            )
    if not parts:
        return results
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*results, {"role": "user", "content": parts[0]["text"]}]
    return [*results, {"role": "user", "content": parts}]


def _tool_result_text(content, where) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for block in content:
        if block.get("type") != "text":
            raise TranslationError(f"{where}: only text tool results are supported by this model's provider.")
        texts.append(block.get("text", ""))
    return "\n".join(texts)


def _image(source, where) -> dict:
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise TranslationError(f"{where}: images must be sent as base64 data or a URL.")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(source, where) -> dict:
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data", "")}
    if source.get("type") == "base64":
        data_url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        return {"type": "file", "file": {"filename": "document.pdf", "file_data": data_url}}
    raise TranslationError(f"{where}: documents must be sent as base64 data or plain text.")


def _assistant_message(content, i) -> dict:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts, calls = [], []
    for j, block in enumerate(content or ()):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        elif kind not in ("thinking", "redacted_thinking"):
            raise TranslationError(
                f"messages[{i}].content[{j}]: the block type '{kind}' is not supported "
                "by this model's provider."
            )
    message = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block) -> dict:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": json_text(block.get("input", {}))},
    }


def _tool(tool, i) -> dict:
    if tool.get("type") not in (None, "custom"):
        raise TranslationError(
            f"tools[{i}]: the server tool '{tool.get('type')}' is not supported by this model's provider."
        )
    function = {
        "name": tool.get("name"),
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice) -> dict:
    if not choice:
        return {}
    kind = choice.get("type")
    converted = {"auto": "auto", "any": "required", "none": "none"}.get(kind)
    if kind == "tool":
        converted = {"type": "function", "function": {"name": choice.get("name")}}
    if converted is None:
        raise TranslationError(f"tool_choice: the type '{kind}' is not supported.")
    result = {"tool_choice": converted}
    if choice.get("disable_parallel_tool_use"):
        result["parallel_tool_calls"] = False
    return result


# --- answers -----------------------------------------------------------------------------------
def openai_usage(usage) -> dict | None:
    if not isinstance(usage, dict) or not isinstance(usage.get("output_tokens"), int):
        return None
    fresh = usage.get("input_tokens")
    if not isinstance(fresh, int):
        return None
    created = usage.get("cache_creation_input_tokens") or 0
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = fresh + created + cached
    output = usage["output_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def finish_reason(stop_reason):
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def chat_completion(message: dict) -> dict:
    texts, calls = [], []
    for block in message.get("content") or ():
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(_tool_call(block))
    reply = {"role": "assistant", "content": "".join(texts) if texts or not calls else None, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    answer = {
        "id": message.get("id") or "msg",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")) or "stop",
            }
        ],
    }
    usage = openai_usage(message.get("usage"))
    if usage:
        answer["usage"] = usage
    return answer


# --- streams -----------------------------------------------------------------------------------
class ChunkStream:
    """Anthropic stream events in, OpenAI chat.completion.chunk dicts out, as each event arrives.

    ``error`` events are the caller's to raise; ``done`` turns true at message_stop, after
    the usage chunk (choices: []) that the gateway meters.
    """

    def __init__(self):
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.done = False
        self._tools = {}  # content block index -> OpenAI tool-call index
        self._usage = {}

    def _chunk(self, delta, finish=None) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def feed(self, event: dict) -> list[dict]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id", "")
            self.model = message.get("model", "")
            self._take_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": "", "refusal": None})]
        if kind == "content_block_start":
            return self._block_start(event.get("index", 0), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index", 0), event.get("delta") or {})
        if kind == "message_delta":
            self._take_usage(event.get("usage"))
            stop_reason = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_reason(stop_reason))] if stop_reason else []
        if kind == "message_stop":
            self.done = True
            usage = openai_usage(self._usage)
            if usage is None:
                return []
            return [
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage,
                }
            ]
        return []  # ping, content_block_stop, and event types added later

    def _block_start(self, index, block) -> list[dict]:
        if block.get("type") == "text":
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if block.get("type") != "tool_use":
            return []
        position = self._tools[index] = len(self._tools)
        arguments = json_text(block["input"]) if block.get("input") else ""
        call = {
            "index": position,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": arguments},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index, delta) -> list[dict]:
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json") and index in self._tools:
            return [
                self._chunk(
                    {
                        "tool_calls": [
                            {"index": self._tools[index], "function": {"arguments": delta["partial_json"]}}
                        ]
                    }
                )
            ]
        return []

    def _take_usage(self, usage):
        # message_start carries the input, message_delta the cumulative output (and, lately, input).
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if isinstance(v, int)})
