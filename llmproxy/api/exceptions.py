"""The REST API's one exception handler: every error as {"error": {"message", "type", "code", "fields"}}.

Django's own errors are mapped too (a model's ValidationError from
full_clean(), a protected delete, a unique constraint lost to a concurrent
write, a value the database cannot store), so none of them becomes a 500.
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "conflict_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the object."
    default_code = "conflict"


def _as_api_exception(exc):
    if isinstance(exc, RecursionError):
        # Python's JSON parser gives up on very deep nesting: the client's body, not our fault.
        return exceptions.ParseError("The JSON body is nested too deeply.")
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, ProtectedError | RestrictedError):
        return Conflict("Other objects still refer to this one; remove them first.", code="protected")
    if isinstance(exc, IntegrityError):
        logger.info("integrity error answered with 409: %s", exc)
        return Conflict("A concurrent change conflicts with this one; nothing was written. Try again.")
    if isinstance(exc, DataError):
        logger.info("data error answered with 400: %s", exc)
        return exceptions.ValidationError("A value is out of the range the database can store.")
    return exc


def _message(detail):
    """The first human-readable message of a DRF error detail (a string, list or dict)."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        inner = _message(value)
        return inner if field in ("non_field_errors", "detail") else f"{field}: {inner}"
    if isinstance(detail, list):
        return _message(detail[0]) if detail else "Invalid request."
    return str(detail)


def exception_handler(exc, context):
    exc = _as_api_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 handling and logging take over
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    error = {
        "message": _message(detail),
        "type": ERROR_TYPES.get(response.status_code, "api_error"),
        "code": codes if isinstance(codes, str) else None,
    }
    if isinstance(detail, dict | list) and isinstance(exc, exceptions.ValidationError):
        error["code"] = "invalid"
        error["fields"] = detail if isinstance(detail, dict) else {"non_field_errors": detail}
    return Response({"error": error}, status=response.status_code, headers=dict(response.items()))
