"""The base of every public viewset: one request lifecycle for all 7 API categories.

Order of checks: route and method (404/405) → authentication and tenant pin (401/403, counted
against the caller's rate budget first) → rate limit (429) → scope (403) → idempotency (400/409/
422 or replay) → the action, which validates input (400/415/422) and calls one service.
"""

from typing import Any

from django.db import transaction
from django.http import HttpResponse, HttpResponseBase
from rest_framework import exceptions as drf_exceptions
from rest_framework.fields import empty
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer, Serializer
from rest_framework.viewsets import GenericViewSet

from neuronx import errors
from neuronx.context import Actor
from neuronx.idempotency import (
    HEADER,
    REPLAYED_HEADER,
    REPLAYED_RESPONSE_HEADERS,
    DigestUploadHandler,
    Replay,
    form_fingerprint_body,
    idempotency_claim,
    idempotency_complete,
    idempotency_key_parse,
    idempotency_release,
    request_fingerprint,
)
from neuronx.models import ApiKey
from neuronx.operations import Operation, operation_of
from neuronx.pagination import CursorPagination
from neuronx.ratelimit import RateState, rate_consume
from neuronx.serializers import StrictQuery

FORM_MEDIA_TYPE = "multipart/form-data"

_EMPTY_QUERY_VALID: dict[type, bool] = {}


def _empty_query_is_valid(serializer_class: type[BaseSerializer]) -> bool:
    """Whether no parameters at all validate to no filters: a strict query whose fields are all
    optional, without a default, and no validation of its own beyond its fields'."""
    valid = _EMPTY_QUERY_VALID.get(serializer_class)
    if valid is None:
        fields = serializer_class().fields.values()  # type: ignore[attr-defined]
        own_validation = (
            getattr(serializer_class, "validate", None) is not Serializer.validate
            or getattr(serializer_class, "run_validation", None) is not Serializer.run_validation
            or getattr(serializer_class, "to_internal_value", None)
            is not StrictQuery.to_internal_value
            or bool(getattr(getattr(serializer_class, "Meta", None), "validators", None))
        )
        valid = not own_validation and all(not f.required and f.default is empty for f in fields)
        _EMPTY_QUERY_VALID[serializer_class] = valid
    return valid


class JsonOnlyNegotiation(BaseContentNegotiation):
    """The API speaks JSON whatever `Accept` says; errors are problem+json."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        content_type = request.content_type or ""
        for parser in parsers:
            if content_type.split(";")[0].strip() == parser.media_type:
                return parser
        return None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


class ApiViewSet(GenericViewSet):
    http_method_names = ["get", "post", "patch", "delete", "head"]
    # Ids are opaque `prefix_ULID` strings; anything else cannot name an object and is a 404.
    lookup_value_regex = "[A-Za-z0-9_-]{1,64}"
    content_negotiation_class = JsonOnlyNegotiation
    rate_state: RateState | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        self.rate_state = None
        method = request.method.lower()
        handler = getattr(self, method, None) if method in self.http_method_names else None
        try:
            if handler is None or operation_of(self, self.action) is None:
                raise drf_exceptions.MethodNotAllowed(request.method)
            self.initial(request, *args, **kwargs)
            if self.operation.idempotent:
                return self._dispatch_idempotent(request, handler, *args, **kwargs)
            response = handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        return self._finalize(request, response, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.format_kwarg = self.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(
            request
        )
        auth_error: errors.ApiError | None = None
        api_key: ApiKey | None = None
        try:
            api_key = request.auth if isinstance(request.auth, ApiKey) else None
        except errors.ApiError as exc:
            auth_error = exc
        if api_key is not None:
            request._request.tenant_id = api_key.tenant_id  # type: ignore[attr-defined]
        self.rate_state = rate_consume(
            request=request,
            api_key=api_key,
            rate_class=self.operation.rate_class,
            counted=getattr(request._request, "rate_counted", None),
        )
        if self.rate_state is not None and self.rate_state.exceeded:
            limited = errors.RateLimited(
                f"Rate limit of the `{self.operation.rate_class}` class exceeded; "
                f"retry in {self.rate_state.reset} seconds.",
                retry_after=self.rate_state.reset,
            )
            limited.headers["Retry-After"] = str(max(self.rate_state.reset, 1))
            raise limited
        if auth_error is not None:
            raise auth_error
        self.check_permissions(request)

    def _dispatch_idempotent(
        self, request: Request, handler: Any, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        key = idempotency_key_parse(request.headers.get(HEADER))
        django_request = request._request
        method = request.method or ""
        claim = idempotency_claim(
            tenant=self.actor.tenant,
            key=key,
            fingerprint=request_fingerprint(
                method=method,
                path=django_request.get_full_path(),
                body=self._fingerprint_body(request),
                content_type=request.content_type or "",
            ),
            method=method,
            path=django_request.get_full_path(),
            request_id=self.actor.request_id,
        )
        if isinstance(claim, Replay):
            replay = HttpResponse(claim.body, status=claim.status)
            for name, value in claim.headers.items():
                replay[name] = value
            replay[REPLAYED_HEADER] = "true"
            return self._finalize(request, replay, *args, **kwargs)
        try:
            with transaction.atomic():
                response = self._finalize(
                    request, handler(request, *args, **kwargs), *args, **kwargs
                )
                if response.status_code >= 500:
                    raise errors.ApiError("The action failed.")
                self._store(claim, response)
            return response
        except Exception as exc:
            response = self._finalize(request, self.handle_exception(exc), *args, **kwargs)
            if response.status_code < 500:
                self._store(claim, response)
            else:
                idempotency_release(record=claim)
            return response

    def is_upload(self, request: Request) -> bool:
        """A multipart upload to a view that accepts uploads."""
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        return media_type == FORM_MEDIA_TYPE and any(
            parser.media_type == FORM_MEDIA_TYPE for parser in self.get_parsers()
        )

    def _fingerprint_body(self, request: Request) -> bytes:
        """The body as the idempotency fingerprint sees it; an upload is hashed as it streams."""
        if not self.is_upload(request):
            return request._request.body
        digests = DigestUploadHandler(request._request)
        request._request.upload_handlers.insert(0, digests)
        fields = request.POST  # parses the upload now: the fingerprint needs all of it
        return form_fingerprint_body(
            fields=[(name, value) for name, values in fields.lists() for value in values],
            files=digests.digests,
        )

    @staticmethod
    def _store(record: Any, response: HttpResponseBase) -> None:
        assert isinstance(response, HttpResponse)
        idempotency_complete(
            record=record,
            status=response.status_code,
            body=response.content.decode(),
            headers={h: response[h] for h in REPLAYED_RESPONSE_HEADERS if response.has_header(h)},
        )

    def _finalize(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response = self.finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]
        if isinstance(response, Response):
            response.render()
        if self.rate_state is not None:
            for name, value in self.rate_state.headers().items():
                response[name] = value
        op = operation_of(self, getattr(self, "action", None))
        if op is not None and op.deprecation is not None:
            for name, value in op.deprecation.headers().items():
                response[name] = value
        return response

    # -- helpers for actions -----------------------------------------------------------------

    @property
    def operation(self) -> Operation:
        op = operation_of(self, self.action)
        assert op is not None, f"{type(self).__name__}.{self.action} declares no operation"
        return op

    @property
    def actor(self) -> Actor:
        api_key = self.request.auth
        assert isinstance(api_key, ApiKey)
        return Actor(
            tenant=api_key.tenant,
            api_key=api_key,
            request_id=getattr(self.request._request, "request_id", ""),
        )

    def validated(self, serializer_class: type[BaseSerializer], **context: Any) -> Any:
        """Validate the JSON object body (or the multipart form, on a view that takes uploads)
        with `serializer_class`; returns validated data."""
        request = self.request
        data: Any
        if self.is_upload(request):
            # A field sent twice stays a list, which the serializer's field then refuses.
            form: Any = request.data  # a QueryDict of the fields and the files
            data = {
                name: values[0] if len(values) == 1 else values for name, values in form.lists()
            }
        else:
            raw = request._request.body
            if raw and not (request.content_type or "").startswith("application/json"):
                raise drf_exceptions.UnsupportedMediaType(request.content_type or "(none)")
            data = request.data
        if not isinstance(data, dict):
            raise errors.MalformedRequest("The body must be a JSON object.")
        serializer = serializer_class(data=data, context={"view": self, **context})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def query(self, serializer_class: type[BaseSerializer]) -> Any:
        """Validate filter query parameters with `serializer_class`; unknown ones are errors."""
        params = self.request.query_params.dict()
        for name in (CursorPagination.page_size_query_param, CursorPagination.cursor_query_param):
            params.pop(name, None)
        if not params and _empty_query_is_valid(serializer_class):
            return {}  # what the serializer would validate, without building it per request
        serializer = serializer_class(data=params)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def paginated(self, queryset: Any, serializer_class: type[BaseSerializer]) -> Response:
        paginator = self.paginator
        assert isinstance(paginator, CursorPagination)
        page = paginator.paginate_queryset(queryset, self.request, self, output=serializer_class)
        assert page is not None
        if paginator.rows_are_text:  # already rendered as `serializer_class` renders them
            return Response(paginator.get_paginated_text(page))
        return self.get_paginated_response(serializer_class(page, many=True).data)
