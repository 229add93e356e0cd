"""Cursor pagination: `?limit=` (1–200, default 50) and an opaque `?cursor=`."""

from typing import Any

from rest_framework import exceptions as drf_exceptions
from rest_framework import pagination
from rest_framework.request import Request

from neuronx import errors

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class CursorPagination(pagination.CursorPagination):
    page_size = DEFAULT_LIMIT
    page_size_query_param = "limit"
    max_page_size = MAX_LIMIT
    cursor_query_param = "cursor"
    # Ids are time-ordered and unique, so they alone give a stable, gap-free order.
    ordering = "-id"

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise drf_exceptions.ValidationError(
                {"limit": [f"Must be an integer from 1 to {MAX_LIMIT}."]}, code="invalid"
            )
        return int(raw)

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except drf_exceptions.NotFound:
            raise errors.MalformedRequest("The `cursor` parameter is not a valid cursor.") from None

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results", "next", "previous"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"Page size, 1–{MAX_LIMIT} (default {DEFAULT_LIMIT}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "Opaque cursor from `next` or `previous`.",
                "schema": {"type": "string"},
            },
        ]
