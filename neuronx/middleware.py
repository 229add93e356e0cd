"""Request ids, access logs and problem responses for everything outside the DRF views."""

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from neuronx.context import request_id_var
from neuronx.problems import exception_to_problem, problem_response

access_logger = logging.getLogger("neuronx.access")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=/\-]{1,128}$")
REQUEST_ID_HEADER = "X-Request-ID"


def _request_id(request: HttpRequest) -> str:
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    if _SAFE_REQUEST_ID.match(sent):
        return sent
    return f"req_{uuid.uuid4().hex}"


class RequestIdMiddleware:
    """Echo or mint `X-Request-ID`, expose it to logs, and write one access line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = _request_id(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            access_logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "tenant_id": getattr(request, "tenant_id", None),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


class ProblemMiddleware:
    """Oversized bodies and faults outside DRF views answer with problem documents too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = request.META.get("CONTENT_LENGTH") or "0"
        limit = settings.MAX_REQUEST_BODY_BYTES
        if length.isdigit() and int(length) > limit:
            return problem_response(
                "payload_too_large", f"The request body exceeds the limit of {limit} bytes."
            )
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        code, detail, extra, headers = exception_to_problem(exception)
        return problem_response(code, detail, headers=headers, **extra)
