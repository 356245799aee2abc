"""OpenTelemetry traces of the proxy: off unless the environment asks, and free when off.

Configuration (read once by setup(), called by llmproxy/asgi.py before Django loads its middleware):

  OTEL_EXPORTER_OTLP_ENDPOINT  tracing on; spans go by OTLP/HTTP to ENDPOINT/v1/traces
  OTEL_TRACES_EXPORTER         otlp (default), console (one JSON span per line on stdout), file (one JSON
                               span per line appended to LLMPROXY_TRACES_FILE), or none (off even with an
                               endpoint). console and file need no endpoint: for debugging and the tests.
  OTEL_SDK_DISABLED=true       off
  OTEL_SERVICE_NAME (default llmproxy), OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER[_ARG],
  OTEL_BSP_SCHEDULE_DELAY, OTEL_PYTHON_DJANGO_EXCLUDED_URLS: as the OpenTelemetry SDK reads them.

One proxied request is one trace:

  POST /v1/chat/completions   SERVER; continues the client's W3C traceparent; tenant, key prefix,
   |                          gen_ai.* request/response model, system and usage, status
   +- llmproxy.key_lookup
   +- llmproxy.cache          when the tenant's response cache is on
   +- llmproxy.quota          when limits apply
   +- chat <upstream model>   CLIENT, one per upstream attempt (retries and fallbacks each their own);
   |                          its traceparent goes to the upstream (inject_headers)
   +- llmproxy.stream         relaying a streamed answer

Django's own requests (admin, REST API) are traced by opentelemetry-instrumentation-django
(/healthz, /readyz and /metrics excluded unless OTEL_PYTHON_DJANGO_EXCLUDED_URLS says otherwise).

When tracing is off every helper returns the same no-op object after one test of a
module-level flag: no span, no context switch, no allocation on the request path.
"""

import asyncio
import contextvars
import os
import threading

ENABLED = False

_tracer = None
_provider = None
_otel = None  # the OpenTelemetry modules, imported by setup(): nothing is imported when tracing is off
_request = contextvars.ContextVar("llmproxy_request_span", default=None)

# Provider kinds as the GenAI semantic conventions name their systems.
_SYSTEMS = {"openai": "openai", "azure": "az.ai.openai", "anthropic": "anthropic"}
_OPERATIONS = {
    "chat": "chat",
    "messages": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
_DEFAULT_EXCLUDED_URLS = "healthz,readyz,metrics"


class _NoSpan:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_attribute(self, key, value):
        pass

    def answered(self, answer):
        pass


NO_SPAN = _NoSpan()


# --- set-up ------------------------------------------------------------------------------------


def setup(exporter=None, *, synchronous=False, instrument_django=True) -> bool:
    """Turn tracing on when the environment asks for it, or with ``exporter`` (tests). True when on.

    ``synchronous`` exports each span as it ends (tests read them at once); otherwise spans are
    exported in batches from a background thread, off the serving loop.
    """
    global ENABLED, _tracer, _provider, _otel
    if ENABLED:
        return True
    from_environment = exporter is None
    if from_environment:
        exporter = _exporter_from_environment()
        if exporter is None:
            return False
    from opentelemetry import context, propagate, trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "llmproxy"})
    provider = TracerProvider(resource=resource)
    processor = SimpleSpanProcessor(exporter) if synchronous else BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    if from_environment:
        # Global, so that the Django instrumentation and any library tracing join the same traces.
        trace.set_tracer_provider(provider)
    if instrument_django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        excluded = os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", _DEFAULT_EXCLUDED_URLS)
        DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=excluded)
    _otel = _Modules(context, propagate, trace, SpanKind, Status, StatusCode)
    _provider = provider
    _tracer = provider.get_tracer("llmproxy.gateway")
    ENABLED = True
    return True


def teardown():
    """Turn tracing off again, exporting what is left (tests)."""
    global ENABLED, _tracer, _provider
    ENABLED = False
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def _exporter_from_environment():
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or ("otlp" if endpoint else "none")
    if choice == "none":
        return None
    if choice == "otlp":
        if not endpoint and not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if choice == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
    if choice == "file":
        path = os.environ.get("LLMPROXY_TRACES_FILE", "").strip()
        if not path:
            raise RuntimeError("OTEL_TRACES_EXPORTER=file needs LLMPROXY_TRACES_FILE (where to append spans)")
        return JsonLinesFileExporter(path)
    raise RuntimeError(f"OTEL_TRACES_EXPORTER={choice!r}: use otlp, console, file or none")


class _Modules:
    __slots__ = ("context", "propagate", "trace", "SpanKind", "Status", "StatusCode")

    def __init__(self, *modules):
        for name, module in zip(self.__slots__, modules, strict=True):
            setattr(self, name, module)


class JsonLinesFileExporter:
    """One JSON span per line appended to a file: traces a test or an operator reads without a collector."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


# --- the request path -------------------------------------------------------------------------


class _Span:
    """A span that is the current one between __enter__ and __exit__, in this task."""

    __slots__ = ("span", "_token")

    def __init__(self, span):
        self.span = span

    def __enter__(self):
        self._token = _otel.context.attach(_otel.trace.set_span_in_context(self.span))
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc is not None:
                self.failed(exc)
        finally:
            _otel.context.detach(self._token)
            self.span.end()
        return False

    def failed(self, exc):
        if isinstance(exc, asyncio.CancelledError):
            # The client went away: not this step's fault.
            self.span.set_attribute("llmproxy.cancelled", True)
            return
        self.span.record_exception(exc)
        self.span.set_attribute(
            "error.type", getattr(exc, "kind", None) or getattr(exc, "code", None) or type(exc).__name__
        )
        self.span.set_status(_otel.Status(_otel.StatusCode.ERROR, str(exc)[:200]))

    def set_attribute(self, key, value):
        if value is not None:
            self.span.set_attribute(key, value)

    def answered(self, answer):
        pass


class _RequestSpan(_Span):
    __slots__ = ("system", "response_model", "_request_token")

    def __init__(self, span):
        super().__init__(span)
        self.system = ""
        self.response_model = ""

    def __enter__(self):
        self._request_token = _request.set(self)
        return super().__enter__()

    def __exit__(self, exc_type, exc, tb):
        _request.reset(self._request_token)
        return super().__exit__(exc_type, exc, tb)


class _AttemptSpan(_Span):
    __slots__ = ("kind",)

    def failed(self, exc):
        status, kind = getattr(exc, "status", None), getattr(exc, "kind", None)
        super().failed(exc)
        if status:
            self.span.set_attribute("http.response.status_code", status)
        if kind == "upstream_error" and status:
            # The semantic conventions' error.type of an HTTP failure: its status code.
            self.span.set_attribute("error.type", str(status))

    def answered(self, answer):
        """Note what the upstream says it answered with (an answer or a stream's first chunk)."""
        if not isinstance(answer, dict):
            return
        model = answer.get("model")
        if isinstance(model, str) and model:
            self.span.set_attribute("gen_ai.response.model", model)
        if isinstance(answer.get("id"), str):
            self.span.set_attribute("gen_ai.response.id", answer["id"])
        request = _request.get()
        if request is not None:
            request.system = self.kind
            request.response_model = model if isinstance(model, str) else ""


class _HeaderGetter:
    """Reads the ASGI scope's headers as the consumer keeps them: lower-case str names, bytes values."""

    def get(self, carrier, key):
        value = carrier.get(key)
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier):
        return list(carrier)


_GETTER = _HeaderGetter()


def request_span(endpoint: str, scope: dict, headers: dict, request_id: str):
    """The SERVER span of one proxied request, after the client's traceparent; current inside ``with``."""
    if not ENABLED:
        return NO_SPAN
    method = scope.get("method", "POST")
    path = scope.get("path", "")
    parent = _otel.propagate.extract(headers, getter=_GETTER)
    span = _tracer.start_span(
        f"{method} {path}",
        context=parent,
        kind=_otel.SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "url.path": path,
            "gen_ai.operation.name": _OPERATIONS.get(endpoint, endpoint),
            "llmproxy.request_id": request_id,
        },
    )
    return _RequestSpan(span)


def span(name: str):
    """An internal step of the current request (key lookup, quota, cache, stream)."""
    if not ENABLED:
        return NO_SPAN
    return _Span(_tracer.start_span(name))


def attempt_span(target, endpoint: str, model: str, try_number: int):
    """The CLIENT span of one upstream attempt; current while the request goes out, with its traceparent."""
    if not ENABLED:
        return NO_SPAN
    from urllib.parse import urlsplit

    provider = target.provider
    system = _SYSTEMS.get(provider.kind, provider.kind)
    operation = _OPERATIONS.get(endpoint, endpoint)
    attributes = {
        "gen_ai.operation.name": operation,
        "gen_ai.system": system,
        "gen_ai.request.model": target.upstream_model,
        "llmproxy.model": model,
        "llmproxy.provider": provider.name,
        "llmproxy.route_id": target.id,
        "llmproxy.try": try_number,
    }
    base = urlsplit(getattr(provider, "base_url", "") or "")
    if base.hostname:
        attributes["server.address"] = base.hostname
        attributes["server.port"] = base.port or (443 if base.scheme == "https" else 80)
    attempt = _AttemptSpan(
        _tracer.start_span(
            f"{operation} {target.upstream_model}", kind=_otel.SpanKind.CLIENT, attributes=attributes
        )
    )
    attempt.kind = system
    return attempt


def inject_headers(headers: dict):
    """Add the current span's W3C traceparent (and tracestate, baggage) to an upstream request's headers."""
    if ENABLED:
        _otel.propagate.inject(headers)


def finish_request(record, *, tenant: str):
    """Describe the current request's span from its usage record (llmproxy.gateway.usage.UsageRecord)."""
    if not ENABLED:
        return
    request = _request.get()
    if request is None:
        return
    span = request.span
    attributes = {
        "llmproxy.tenant": tenant,
        "llmproxy.key_prefix": record.key_prefix,
        "llmproxy.provider": record.provider,
        "llmproxy.cache_hit": record.cache_hit,
        "llmproxy.stream": record.stream,
        "llmproxy.attempts": len(record.attempts),
        "http.response.status_code": record.status,
        "gen_ai.usage.input_tokens": record.input_tokens,
        "gen_ai.usage.output_tokens": record.output_tokens,
    }
    if record.model:
        attributes["gen_ai.request.model"] = record.model
    if request.system:
        attributes["gen_ai.system"] = request.system
    response_model = request.response_model or record.upstream_model
    if response_model:
        attributes["gen_ai.response.model"] = response_model
    if record.error_type:
        attributes["error.type"] = record.error_type
    span.set_attributes(attributes)
    if record.status >= 500:
        span.set_status(_otel.Status(_otel.StatusCode.ERROR, record.error_type or None))


def current_ids() -> dict:
    """The trace and span ids of the current span, for log lines ({} outside any span)."""
    if not ENABLED:
        return {}
    context = _otel.trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}
