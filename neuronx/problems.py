"""RFC 9457 problem details: the one place error bodies are built."""

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.views import set_rollback

from neuronx.context import request_id_var
from neuronx.errors import CATALOG, ApiError

logger = logging.getLogger("neuronx.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(code: str, detail: str | None = None, **extra: Any) -> dict[str, Any]:
    error = CATALOG[code]
    body: dict[str, Any] = {
        "type": error.type_uri,
        "title": error.title,
        "status": error.status,
        "detail": detail or error.meaning,
        "code": code,
        "request_id": request_id_var.get(),
    }
    body.update(extra)
    return body


def problem_response(
    code: str, detail: str | None = None, headers: Mapping[str, str] | None = None, **extra: Any
) -> JsonResponse:
    response = JsonResponse(
        problem_body(code, detail, **extra),
        status=CATALOG[code].status,
        content_type=PROBLEM_CONTENT_TYPE,
        json_dumps_params={"ensure_ascii": False},
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _field_errors(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """Flatten DRF's nested error structure into `[{field, code, message}]`."""
    if isinstance(detail, Mapping):
        errors = []
        for key, value in detail.items():
            if key == "non_field_errors":
                field = prefix
            elif isinstance(key, int):
                field = f"{prefix}[{key}]"
            elif prefix:
                field = f"{prefix}.{key}"
            else:
                field = str(key)
            errors.extend(_field_errors(value, field))
        return errors
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [
                {"field": prefix, "code": getattr(item, "code", "invalid"), "message": str(item)}
                for item in detail
            ]
        errors = []
        for index, item in enumerate(detail):
            if item:
                errors.extend(_field_errors(item, f"{prefix}[{index}]"))
        return errors
    return [{"field": prefix, "code": getattr(detail, "code", "invalid"), "message": str(detail)}]


def exception_to_problem(
    exc: BaseException,
) -> tuple[str, str | None, dict[str, Any], dict[str, str]]:
    """Map any exception we know to (code, detail, extra members, headers); unknown → internal_error."""
    if isinstance(exc, ApiError):
        return exc.code, exc.detail, exc.extra, exc.headers
    if isinstance(exc, drf.ValidationError):
        return (
            "validation_error",
            "The request has invalid fields.",
            {"errors": _field_errors(exc.detail)},
            {},
        )
    if isinstance(exc, drf.ParseError):
        return "malformed_request", f"The body could not be parsed: {exc.detail}", {}, {}
    if isinstance(exc, drf.UnsupportedMediaType):
        return "unsupported_media_type", str(exc.detail), {}, {}
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return "authentication_failed", None, {}, {"WWW-Authenticate": 'Bearer realm="api"'}
    if isinstance(exc, drf.PermissionDenied | DjangoPermissionDenied):
        return "permission_denied", None, {}, {}
    if isinstance(exc, drf.NotFound | Http404):
        return "not_found", None, {}, {}
    if isinstance(exc, drf.MethodNotAllowed):
        return "method_not_allowed", str(exc.detail), {}, {}
    if isinstance(exc, RequestDataTooBig):
        return "payload_too_large", None, {}, {}
    if isinstance(exc, SuspiciousOperation):  # e.g. too many form fields or files in an upload
        return "malformed_request", "The request is malformed.", {}, {}
    if isinstance(exc, OperationalError | InterfaceError):
        logger.error("database unavailable", exc_info=exc)
        return "service_unavailable", None, {}, {"Retry-After": "5"}
    if isinstance(exc, DatabaseError):
        logger.error("database error", exc_info=exc)
        return "internal_error", None, {}, {}
    logger.error("unhandled exception", exc_info=exc)
    return "internal_error", None, {}, {}


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> HttpResponse:
    """DRF's exception handler: every exception, known or not, becomes a problem response."""
    code, detail, extra, headers = exception_to_problem(exc)
    set_rollback()
    return problem_response(code, detail, headers=headers, **extra)


def not_found_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return problem_response("not_found", f"No route matches {request.path}.")


def server_error_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return problem_response("internal_error")
