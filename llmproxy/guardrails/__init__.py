"""Guardrails: each tenant's content rules on prompts and answers (block, mask, flag; shadow mode).

The gateway's entry points:

- ``cache.guard_for(key, model, request_id)``: the request's RequestGuard, or
  None when no rule of the tenant applies (one cache lookup);
- ``RequestGuard.check_request`` / ``check_answer`` / ``stream`` (engine.py);
- ``RequestGuard.hits``, handed to ``hits.record_hits`` by the usage batch writer.
"""
