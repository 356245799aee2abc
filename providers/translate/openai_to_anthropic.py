"""OpenAI's chat format -> Anthropic's Messages format.

- ``messages_request``: an OpenAI chat request, for an upstream of kind ``anthropic``.
- ``message`` and ``EventStream``: an OpenAI answer (plain, or chunks as they arrive), for a
  /v1/messages client whose model is served by an OpenAI-speaking route.
"""

import orjson

from providers.translate.common import TranslationError, parse_data_url

# Anthropic's own settings, which an OpenAI client can still send (the SDKs' extra_body).
ANTHROPIC_EXTRAS = ("top_k", "thinking")

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


# --- requests ----------------------------------------------------------------------------------
def messages_request(chat: dict, *, default_max_tokens: int) -> dict:
    if (chat.get("n") or 1) > 1:
        raise TranslationError("'n' greater than 1 is not supported by this model's provider.")
    system, turns = [], []
    for i, message in enumerate(chat.get("messages") or ()):
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text(message.get("content"), f"messages[{i}]")
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), i)
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, i)]
        else:
            raise TranslationError(
                f"messages[{i}]: the role '{role}' is not supported by this model's provider."
            )
        if not blocks:
            continue
        # Anthropic wants user and assistant turns to alternate: runs of one role become one turn.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    body = {
        "model": chat.get("model"),
        "messages": turns,
        # Anthropic requires max_tokens; OpenAI clients often leave it out.
        "max_tokens": chat.get("max_completion_tokens") or chat.get("max_tokens") or default_max_tokens,
    }
    if system:
        body["system"] = "\n\n".join(system)
    temperature = chat.get("temperature")
    if temperature is not None:
        # OpenAI allows up to 2, Anthropic refuses more than 1: the most random it has rather than a 400.
        body["temperature"] = min(temperature, 1.0)
    if chat.get("top_p") is not None:
        body["top_p"] = chat["top_p"]
    stop = chat.get("stop")
    if stop:
        stops = [stop] if isinstance(stop, str) else stop
        body["stop_sequences"] = [s for s in stops if isinstance(s, str) and s]
    if isinstance(chat.get("user"), str) and chat["user"]:
        body["metadata"] = {"user_id": chat["user"]}
    if chat.get("stream"):
        body["stream"] = True
    body.update({name: chat[name] for name in ANTHROPIC_EXTRAS if chat.get(name) is not None})
    tools = chat.get("tools")
    if tools:
        body["tools"] = [_tool(tool, i) for i, tool in enumerate(tools)]
        choice = _tool_choice(chat.get("tool_choice"), chat.get("parallel_tool_calls"))
        if choice:
            body["tool_choice"] = choice
    return body


def _text(content, where) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") in ("text", "refusal"):
            parts.append(part.get("text") or part.get("refusal") or "")
        else:
            raise TranslationError(f"{where}: only text parts are supported here.")
    return "\n".join(parts)


def _user_blocks(content, i) -> list:
    if content is None or isinstance(content, str):
        # Anthropic rejects empty text blocks.
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"messages[{i}].content[{j}]"))
        elif kind == "file":
            blocks.append(_document(part.get("file") or {}, f"messages[{i}].content[{j}]"))
        else:
            raise TranslationError(
                f"messages[{i}].content[{j}]: the part type '{kind}' is not supported by "
                "this model's provider."
            )
    return blocks


def _image(image_url, where) -> dict:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise TranslationError(f"{where}: an image_url part needs a url.")
    inline = parse_data_url(url)
    if inline:
        return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _document(file, where) -> dict:
    data = file.get("file_data")
    inline = parse_data_url(data) if isinstance(data, str) else None
    if not inline:
        raise TranslationError(f"{where}: only files sent inline as base64 data URLs are supported.")
    return {"type": "document", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}


def _assistant_blocks(message, i) -> list:
    text = _text(message.get("content"), f"messages[{i}]")
    blocks = [{"type": "text", "text": text}] if text else []
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            tool_input = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            tool_input = None
        if not isinstance(tool_input, dict):
            raise TranslationError(f"messages[{i}].tool_calls[{j}]: the arguments must be a JSON object.")
        blocks.append(
            {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": tool_input}
        )
    return blocks


def _tool_result(message, i) -> dict:
    block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    text = _text(message.get("content"), f"messages[{i}]")
    if text:
        block["content"] = text
    return block


def _tool(tool, i) -> dict:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise TranslationError(f"tools[{i}]: only function tools are supported by this model's provider.")
    function = tool.get("function") or {}
    converted = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _tool_choice(choice, parallel) -> dict | None:
    if choice is None:
        converted = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        converted = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        converted = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        converted = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise TranslationError("'tool_choice' must be 'auto', 'none', 'required' or name a function.")
    if converted and parallel is False:
        converted["disable_parallel_tool_use"] = True
    return converted


# --- answers -----------------------------------------------------------------------------------
def usage(input_tokens: int, output_tokens: int, cached: int = 0) -> dict:
    # Anthropic counts cache reads apart from input_tokens; OpenAI's prompt_tokens includes them.
    cached = min(cached, input_tokens)
    return {
        "input_tokens": input_tokens - cached,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def cached_tokens(openai_usage) -> int:
    details = openai_usage.get("prompt_tokens_details") if isinstance(openai_usage, dict) else None
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) else 0


def message_id(openai_id) -> str:
    if isinstance(openai_id, str) and openai_id.startswith("msg_"):
        return openai_id
    return f"msg_{openai_id or 'proxy'}"


def message(answer: dict, *, model: str, input_tokens: int, output_tokens: int) -> dict:
    """An OpenAI chat.completion as an Anthropic message; the tokens are the ones the gateway metered."""
    choice = (answer.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    content = []
    text = _answer_text(reply.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    for call in reply.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": tool_input(function.get("arguments")),
            }
        )
    return {
        "id": message_id(answer.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
        "stop_sequence": None,
        "usage": usage(input_tokens, output_tokens, cached_tokens(answer.get("usage"))),
    }


def _answer_text(content) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def tool_input(arguments) -> dict:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    # Anthropic's tool_use input is always an object; a model's malformed arguments are kept, not lost.
    return value if isinstance(value, dict) else {"arguments": arguments}


# --- streams -----------------------------------------------------------------------------------
class EventStream:
    """OpenAI chunks in, Anthropic stream events out, each as soon as its chunk arrives.

    Events are dicts whose ``type`` is also their SSE event name. ``finish`` ends the
    message once the usage is known (OpenAI sends it after the last content chunk).
    """

    def __init__(self, model: str):
        self.model = model
        self.stop_reason = None
        self._started = False
        self._blocks = 0  # content blocks opened so far
        self._open = None  # ("text", None) or ("tool", OpenAI tool-call index) of the open block
        self._tool_blocks = {}  # OpenAI tool-call index -> block index
        self._cached = 0

    def start(self, message_id: str, input_tokens: int) -> list[dict]:
        self._started = True
        return [
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage(input_tokens, 0),
                },
            }
        ]

    @property
    def started(self):
        return self._started

    def feed(self, chunk: dict) -> list[dict]:
        events = []
        if isinstance(chunk.get("usage"), dict):
            self._cached = cached_tokens(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._open != ("text", None):
                    events.extend(self._close())
                    events.append(self._open_block(("text", None), {"type": "text", "text": ""}))
                events.append(self._delta(self._blocks - 1, {"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                events.extend(self._tool_call(call))
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return events

    def _tool_call(self, call) -> list[dict]:
        events = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        if index not in self._tool_blocks:
            events.extend(self._close())
            self._tool_blocks[index] = self._blocks
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{index}",
                "name": function.get("name") or "",
                "input": {},
            }
            events.append(self._open_block(("tool", index), block))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(
                self._delta(self._tool_blocks[index], {"type": "input_json_delta", "partial_json": arguments})
            )
        return events

    def _open_block(self, which, block) -> dict:
        self._open = which
        self._blocks += 1
        return {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}

    @staticmethod
    def _delta(index, delta) -> dict:
        return {"type": "content_block_delta", "index": index, "delta": delta}

    def _close(self) -> list[dict]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": self._blocks - 1}]

    def finish(self, input_tokens: int, output_tokens: int) -> list[dict]:
        events = self._close()
        delta_usage = usage(input_tokens, output_tokens, self._cached)
        del delta_usage["cache_creation_input_tokens"]
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
                "usage": delta_usage,
            }
        )
        events.append({"type": "message_stop"})
        return events
