"""Counting what an answer used, from the upstream's usage block or, failing that, tiktoken."""

from quotas.tokens import count_request_input, count_text


class Meter:
    """Follows one answer (plain or streamed) and tells its input and output tokens."""

    __slots__ = (
        "endpoint",
        "body",
        "input_tokens",
        "output_tokens",
        "estimated",
        "_parts",
        "_usage_seen",
        "_count_live",
        "streamed_output_tokens",
    )

    def __init__(self, endpoint: str, body: dict):
        self.endpoint = endpoint
        self.body = body
        self.input_tokens = 0
        self.output_tokens = 0
        self.estimated = False
        self._parts: list[str] = []
        self._usage_seen = False
        self._count_live = False
        self.streamed_output_tokens = 0

    def count_output_as_it_streams(self):
        """Keep a running token count of streamed output (only when a quota may cut the stream)."""
        self._count_live = True

    def take_usage(self, usage) -> bool:
        if not isinstance(usage, dict):
            return False
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens", 0 if self.endpoint == "embeddings" else None)
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return False
        self.input_tokens, self.output_tokens = prompt, completion
        self._usage_seen = True
        return True

    def observe_answer(self, answer: dict):
        self.take_usage(answer.get("usage"))
        for choice in answer.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                self._collect_message(message)
            elif isinstance(choice.get("text"), str):
                self._parts.append(choice["text"])

    def observe_chunk(self, chunk: dict):
        if chunk.get("usage") is not None:
            self.take_usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._collect_message(delta)
            elif isinstance(choice.get("text"), str):
                self._parts.append(choice["text"])
                if self._count_live:
                    self.streamed_output_tokens += count_text(choice["text"])

    def _collect_message(self, message: dict):
        content = message.get("content")
        if isinstance(content, str):
            self._parts.append(content)
            if self._count_live:
                self.streamed_output_tokens += count_text(content)
        for call in message.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                for key in ("name", "arguments"):
                    if isinstance(fn.get(key), str):
                        self._parts.append(fn[key])

    def finish(self):
        """Fill in estimates where the upstream gave no usage (or the stream was cut short)."""
        if not self._usage_seen:
            self.estimated = True
            self.input_tokens = count_request_input(self.endpoint, self.body)
            self.output_tokens = count_text("".join(self._parts))
        return self.input_tokens, self.output_tokens

    @property
    def text(self) -> str:
        """The answer's text as far as it went (for tenants that store completions)."""
        return "".join(self._parts)

    @property
    def usage_seen(self):
        return self._usage_seen
