"""Errors of the /v1 surface, in OpenAI's shape (Anthropic's on /v1/messages)."""

import orjson

# The error "type" OpenAI's API uses for each status, which the SDKs surface.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """An answer to send instead of proxying: status, message, OpenAI code and extra headers."""

    def __init__(self, status, message, *, code=None, param=None, type=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _OPENAI_TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def openai_body(self):
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )

    def anthropic_body(self):
        kind = _ANTHROPIC_TYPES.get(self.status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": self.message}})


def bad_request(message, *, param=None, code=None):
    return GatewayError(400, message, param=param, code=code)


def upstream_error_status(status):
    """The status a client gets for an upstream failure that exhausted every route."""
    if status == 504:
        return 504
    if status in (429, 503, 529):
        return 503
    return 502
