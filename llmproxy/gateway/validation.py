"""Request bodies of the OpenAI endpoints: decoded and checked just enough to answer 400 well.

Unknown fields pass through untouched; only what the proxy itself relies on
(model, stream, token limits, the messages it counts) is checked.
"""

import orjson

from llmproxy.gateway.errors import bad_request

_NUMBER = (int, float)


def decode_json(body: bytes) -> dict:
    if not body:
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc.msg}.", code="invalid_json")
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return payload


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _check_common(payload: dict):
    model = payload.get("model")
    if model is None:
        raise bad_request(
            "You must provide a model parameter.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise bad_request("'model' must be a non-empty string.", param="model", code="invalid_type")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = payload.get(name)
        if value is not None and (not is_int(value) or value < 1):
            raise bad_request(f"'{name}' must be an integer of at least 1.", param=name, code="invalid_type")
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = payload.get(name)
        if value is not None and not _is_number(value):
            raise bad_request(f"'{name}' must be a number.", param=name, code="invalid_type")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", param="stream", code="invalid_type")
    options = payload.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request(
                "'stream_options' must be an object.", param="stream_options", code="invalid_type"
            )
        if not stream:
            raise bad_request(
                "'stream_options' is only allowed when 'stream' is true.",
                param="stream_options",
                code="invalid_value",
            )


def validate_chat(payload: dict):
    _check_common(payload)
    messages = payload.get("messages")
    if messages is None:
        raise bad_request(
            "You must provide a messages parameter.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array.", param="messages", code="invalid_type")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(
                f"'messages[{i}]' must be an object.", param=f"messages[{i}]", code="invalid_type"
            )
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise bad_request(
                f"'messages[{i}].role' must be a string.", param=f"messages[{i}].role", code="invalid_type"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise bad_request(
                f"'messages[{i}].content' must be a string or an array.",
                param=f"messages[{i}].content",
                code="invalid_type",
            )


def _check_prompt(value, name):
    if value is None:
        raise bad_request(
            f"You must provide a{'n' if name == 'input' else ''} {name} parameter.",
            param=name,
            code="missing_required_parameter",
        )
    ok = isinstance(value, str) or (
        isinstance(value, list)
        and value
        and (
            all(isinstance(v, str) for v in value)
            or all(is_int(v) for v in value)
            or all(isinstance(v, list) and all(is_int(t) for t in v) for v in value)
        )
    )
    if not ok:
        raise bad_request(
            f"'{name}' must be a string, an array of strings or an array of token ids.",
            param=name,
            code="invalid_type",
        )


def validate_completions(payload: dict):
    _check_common(payload)
    _check_prompt(payload.get("prompt"), "prompt")


def validate_embeddings(payload: dict):
    _check_common(payload)
    if payload.get("stream"):
        raise bad_request("Embeddings cannot be streamed.", param="stream", code="invalid_value")
    _check_prompt(payload.get("input"), "input")


VALIDATORS = {"chat": validate_chat, "completions": validate_completions, "embeddings": validate_embeddings}
