"""Tool calls of the mock upstream: the model option ``tool=NAME`` answers with one call of NAME.

The call's arguments are always TOOL_INPUT, so tests can assert them in
either wire format. OpenAI's shapes live here; Anthropic's in providers.mock_anthropic.
"""

import orjson

from providers import mock_engine
from quotas.tokens import count_text

TOOL_INPUT = {"location": "Paris", "unit": "celsius"}


def arguments() -> str:
    return orjson.dumps(TOOL_INPUT).decode()


def output_tokens(name: str, text: str = "") -> int:
    return count_text(text) + count_text(name) + count_text(arguments())


def call_id(name: str) -> str:
    return f"call_mock_{name}"


def _usage(body, name, text):
    prompt = mock_engine.input_tokens("chat", body)
    completion = output_tokens(name, text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_completion(model: str, body: dict, options: dict) -> dict:
    """A chat.completion whose answer is a call of ``options['tool']`` (after ``reply``, when given)."""
    name = options["tool"]
    text = str(options["reply"]) if "reply" in options else None
    answer = mock_engine.chat_completion(model, body, options)
    choice = answer["choices"][0]
    choice["message"]["content"] = text
    choice["message"]["tool_calls"] = [
        {"id": call_id(name), "type": "function", "function": {"name": name, "arguments": arguments()}}
    ]
    choice["finish_reason"] = "tool_calls"
    if options.get("usage", True):
        answer["usage"] = _usage(body, name, text or "")
    return answer


def stream_chunks(model: str, body: dict, options: dict) -> list[dict]:
    name = options["tool"]
    text = str(options["reply"]) if "reply" in options else ""
    plain = mock_engine.stream_chunks("chat", model, body, {**options, "usage": False})
    first, finish = plain[0], plain[-1]

    def chunk(delta, finish_reason=None):
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**first, "choices": [choice]}

    chunks = [first]
    if text:
        pieces = mock_engine.split_chunks(text, options.get("chunks", 5))
        chunks.extend(chunk({"content": piece}) for piece in pieces)
    chunks.append(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id(name),
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        )
    )
    chunks.extend(
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        for piece in mock_engine.split_chunks(arguments(), 3)
    )
    chunks.append(chunk({}, "tool_calls"))
    if options.get("usage", True) and (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**finish, "choices": [], "usage": _usage(body, name, text)})
    return chunks
