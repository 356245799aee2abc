"""Anthropic's Messages API on the mock upstream: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Answers in Anthropic's wire format (the shapes of the anthropic SDK's types),
driven by the model-name options of providers.mock_engine (``reply``, ``chunks``,
``latency_ms``, ``chunk_delay_ms``, ``fail_status``, ``fail_after_chunks``,
``hang``, ``reset``, ``fail_first``, ``usage``) and ``tool=NAME``: a tool_use
block of that tool with providers.mock_tools.TOOL_INPUT (after a text block
when ``reply`` is given). It honours ``max_tokens`` and ``stop_sequences``.
A stream is the real sequence of events: message_start, then per block
content_block_start, ping (once), content_block_delta..., content_block_stop,
then message_delta and message_stop. ``fail_after_chunks=N`` sends an
overloaded ``error`` event after N deltas, as Anthropic does mid-stream.
"""

import asyncio
import hashlib

import orjson
from aiohttp import web

from providers import mock_engine, mock_tools
from quotas.tokens import count_text, encoding

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


OVERLOADED_EVENT = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def error(status, message, headers=None):
    body = {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _block_text(block) -> str:
    kind = block.get("type")
    if kind == "text":
        return block.get("text", "")
    if kind == "tool_use":
        return f"{block.get('name', '')} {orjson.dumps(block.get('input', {})).decode()}"
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return " ".join(_block_text(b) for b in content if isinstance(b, dict))
        return content or ""
    return ""


def input_tokens(body: dict) -> int:
    system = body.get("system")
    texts = [system if isinstance(system, str) else " ".join(_block_text(b) for b in system or ())]
    messages = body.get("messages") or []
    for message in messages:
        content = message.get("content")
        texts.append(content if isinstance(content, str) else " ".join(_block_text(b) for b in content or ()))
    if body.get("tools"):
        texts.append(orjson.dumps(body["tools"]).decode())
    return count_text("\n".join(texts)) + 3 * len(messages)


def _said(body) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(b.get("text", "") for b in content or () if b.get("type") == "text")
    return ""


def _text_and_stop(body, options):
    if "reply" in options:
        text = str(options["reply"])
    else:
        said = _said(body)
        text = f"Mock answer to: {said[:200]}" if said else "Mock answer."
    for sequence in body.get("stop_sequences") or ():
        if sequence and sequence in text:
            return text[: text.index(sequence)], "stop_sequence", sequence
    tokens = encoding().encode(text, disallowed_special=())
    if len(tokens) > body["max_tokens"]:
        return encoding().decode(tokens[: body["max_tokens"]]), "max_tokens", None
    return text, "end_turn", None


def message(model: str, body: dict, options: dict) -> dict:
    tool = options.get("tool")
    if tool:
        text = str(options["reply"]) if "reply" in options else ""
        stop_reason, stop_sequence = "tool_use", None
        output = mock_tools.output_tokens(tool, text)
    else:
        text, stop_reason, stop_sequence = _text_and_stop(body, options)
        output = count_text(text)
    content = [{"type": "text", "text": text}] if text or not tool else []
    if tool:
        content.append(
            {"type": "tool_use", "id": f"toolu_mock_{tool}", "name": tool, "input": mock_tools.TOOL_INPUT}
        )
    answer = {
        "id": "msg_mock" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
    }
    if options.get("usage", True):
        answer["usage"] = {
            "input_tokens": input_tokens(body),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output,
            "service_tier": "standard",
        }
    return answer


def stream_events(answer: dict, options: dict) -> list[dict]:
    """The events that stream ``answer``, each a dict whose ``type`` is its SSE event name."""
    start = {**answer, "content": [], "stop_reason": None, "stop_sequence": None}
    if "usage" in answer:
        start["usage"] = {**answer["usage"], "output_tokens": 1}
    events = [{"type": "message_start", "message": start}]
    for index, block in enumerate(answer["content"]):
        if block["type"] == "text":
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            deltas = [
                {"type": "text_delta", "text": piece}
                for piece in mock_engine.split_chunks(block["text"], options.get("chunks", 5))
                if piece
            ]
        else:
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
            )
            pieces = ["", *mock_engine.split_chunks(orjson.dumps(block["input"]).decode(), 3)]
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        if index == 0:
            events.append({"type": "ping"})
        events.extend({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas)
        events.append({"type": "content_block_stop", "index": index})
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": answer["stop_sequence"]},
    }
    if "usage" in answer:
        delta["usage"] = {"output_tokens": answer["usage"]["output_tokens"]}
    events.extend([delta, {"type": "message_stop"}])
    return events


class AnthropicEndpoints:
    """The handlers, bound to the mock upstream whose request and stream records they share."""

    def __init__(self, upstream):
        self.upstream = upstream

    async def _accept(self, request, *, counting=False):
        """(body, None) for a request the real API would take, else (None, its error answer)."""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None, error(400, "invalid JSON")
        self.upstream.remember(request, body)
        expected = request.app.get("required_key")
        if expected and request.headers.get("x-api-key") != expected:
            return None, error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return None, error(400, "anthropic-version: header is required")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return None, error(400, "model: Field required")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return None, error(400, "messages: Field required")
        if not counting and not isinstance(body.get("max_tokens"), int):
            return None, error(400, "max_tokens: Field required")
        return body, None

    async def messages(self, request):
        body, refusal = await self._accept(request)
        if refusal is not None:
            return refusal
        model, options = mock_engine.split_model(body["model"])
        options = self.upstream.faults_for(body["model"], options)
        if options.get("latency_ms"):
            await asyncio.sleep(options["latency_ms"] / 1000)
        if options.get("hang"):
            await asyncio.sleep(3600)
        if options.get("reset"):
            request.transport.abort()
            return web.Response()  # never sent: the connection is gone
        status = options.get("fail_status")
        if status:
            headers = {"retry-after": str(options["retry_after"])} if "retry_after" in options else None
            return error(status, "Overloaded" if status == 529 else "mock failure", headers)
        answer = message(model, body, options)
        if body.get("stream"):
            return await self._stream(request, model, stream_events(answer, options), options)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def count_tokens(self, request):
        body, refusal = await self._accept(request, counting=True)
        if refusal is not None:
            return refusal
        return web.Response(
            body=orjson.dumps({"input_tokens": input_tokens(body)}), content_type="application/json"
        )

    async def _stream(self, request, model, events, options):
        record = {"model": model, "sent": 0, "outcome": "started"}
        self.upstream.streams.append(record)
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        delay = options.get("chunk_delay_ms", 0) / 1000
        fail_after = options.get("fail_after_chunks")
        deltas = 0
        try:
            for event in events:
                if event["type"] == "content_block_delta":
                    if fail_after is not None and deltas >= fail_after:
                        await response.write(_frame(OVERLOADED_EVENT))
                        record["outcome"] = "failed"
                        await response.write_eof()
                        return response
                    if deltas and delay:
                        await asyncio.sleep(delay)
                    deltas += 1
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError
                await response.write(_frame(event))
                record["sent"] += 1
            record["outcome"] = "completed"
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            record["outcome"] = "client_disconnected"
        return response


def _frame(event: dict) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
