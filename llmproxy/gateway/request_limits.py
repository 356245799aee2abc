"""A tenant's limits on the request itself: input length, max_tokens, allowed parameters (400 otherwise)."""

from llmproxy.gateway.errors import bad_request
from quotas.tokens import count_request_input

# What every request of an endpoint needs, whatever the tenant allows.
_ALWAYS_ALLOWED = frozenset({"model", "messages", "prompt", "input", "stream"})


def apply_request_limits(tenant, endpoint: str, payload: dict) -> dict:
    """The payload within the tenant's limits (max_tokens filled in), or a 400 naming the limit."""
    if tenant.allowed_parameters:
        for name in payload:
            if name not in _ALWAYS_ALLOWED and name not in tenant.allowed_parameters:
                raise bad_request(
                    f"The parameter '{name}' is not allowed for this tenant.",
                    param=name,
                    code="parameter_not_allowed",
                )
    if tenant.max_output_tokens and endpoint != "embeddings":
        field = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
        requested = payload.get(field)
        if requested is None:
            payload = {**payload, field: tenant.max_output_tokens}
        elif requested > tenant.max_output_tokens:
            raise bad_request(
                f"'{field}' may be at most {tenant.max_output_tokens} for this tenant.",
                param=field,
                code="max_tokens_too_large",
            )
    if tenant.max_input_tokens:
        tokens = count_request_input(endpoint, payload)
        if tokens > tenant.max_input_tokens:
            raise bad_request(
                f"The input has {tokens} tokens; this tenant allows at most {tenant.max_input_tokens}.",
                code="input_too_long",
            )
    return payload
