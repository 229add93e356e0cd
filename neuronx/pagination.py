"""Cursor pagination: `?limit=` (1–200, default 50) and an opaque `?cursor=`."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db.models import QuerySet
from rest_framework import exceptions as drf_exceptions
from rest_framework import pagination
from rest_framework.request import Request

from neuronx import errors
from neuronx.renderers import JsonText

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class FixedPages:
    """The rows of the queryset `orm()` builds, with a faster way to read a page of them:
    `fetch(descending=…, before=…, after=…, limit=…)` returns the rows of ids below `before`
    (or above `after`), in id order, as dicts of the attributes the queryset's instances have.
    The queryset is only built when DRF's own path is taken.
    """

    orm: Callable[[], QuerySet[Any]]
    fetch: Callable[..., list[dict[str, Any]]]
    # The same rows as `RowText`s, where the database writes them as JSON text: `fetch_json`
    # takes `fetch`'s arguments, and gives each row as `json_output` renders it.
    fetch_json: Callable[..., list["RowText"]] | None = None
    json_output: type | None = None


class RowText(NamedTuple):
    id: str
    json: str  # the row as its output serializer and `JsonRenderer` write it


class CursorPagination(pagination.CursorPagination):
    page_size = DEFAULT_LIMIT
    page_size_query_param = "limit"
    max_page_size = MAX_LIMIT
    cursor_query_param = "cursor"
    # Ids are time-ordered and unique, so they alone give a stable, gap-free order.
    ordering = "-id"
    # Whether the last page read is of `RowText`s, for `get_paginated_text`.
    rows_are_text = False

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise drf_exceptions.ValidationError(
                {"limit": [f"Must be an integer from 1 to {MAX_LIMIT}."]}, code="invalid"
            )
        return int(raw)

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None, *, output: type | None = None
    ) -> list[Any] | None:
        """DRF's keyset pagination; on `FixedPages` the page query is their `fetch`, with the
        same rows and positions as the ORM query DRF builds (cursors with an offset, which only
        a repeated position needs, take DRF's own path), or their `fetch_json` for a page to be
        rendered by `output` if they have its rows as text."""
        self.rows_are_text = False
        if not isinstance(queryset, FixedPages):
            return super().paginate_queryset(queryset, request, view)
        if getattr(view, "filter_backends", None):  # an ordering filter may reorder the rows
            return super().paginate_queryset(queryset.orm(), request, view)
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        # Only ordering filters read the queryset here, and there are none (checked above).
        ordering: Any = self.get_ordering(request, None, view)  # type: ignore[arg-type]
        self.ordering = ordering
        self.cursor = self.decode_cursor(request)
        current_position: Any
        if self.cursor is None:
            (offset, reverse, current_position) = (0, False, None)
        else:
            (offset, reverse, current_position) = self.cursor
        if offset != 0 or ordering != ("-id",):
            return super().paginate_queryset(queryset.orm(), request, view)

        # DRF orders by `-id`, or by `id` for a reverse cursor, and filters on the cursor's
        # position: below it (`id__lt`) when exactly one of the two is reversed.
        bound: dict[str, Any] = {}
        if current_position is not None:
            bound["before" if reverse is False else "after"] = current_position
        fetch: Callable[..., list[Any]] = queryset.fetch
        if (
            queryset.fetch_json is not None
            and output is not None
            and output is queryset.json_output
        ):
            fetch, self.rows_are_text = queryset.fetch_json, True
        results = fetch(descending=not reverse, limit=self.page_size + 1, **bound)
        self.page = list(results[: self.page_size])

        following_position: Any
        if len(results) > len(self.page):
            has_following_position = True
            following_position = self._get_position_from_instance(results[-1], self.ordering)
        else:
            has_following_position = False
            following_position = None

        if reverse:
            self.page = list(reversed(self.page))
            self.has_next = (current_position is not None) or (offset > 0)
            self.has_previous = has_following_position
            if self.has_next:
                self.next_position = current_position
            if self.has_previous:
                self.previous_position = following_position
        else:
            self.has_next = has_following_position
            self.has_previous = (current_position is not None) or (offset > 0)
            if self.has_next:
                self.next_position = following_position
            if self.has_previous:
                self.previous_position = current_position

        if (self.has_previous or self.has_next) and self.template is not None:
            self.display_page_controls = True
        return self.page

    def get_paginated_text(self, rows: list[RowText]) -> JsonText:
        """`get_paginated_response`'s document for a page of `RowText`s, as JSON text."""
        links = self.get_next_link(), self.get_previous_link()
        next_link, previous_link = (json.dumps(link, ensure_ascii=False) for link in links)
        results = ",".join(row.json for row in rows)
        return JsonText(f'{{"next":{next_link},"previous":{previous_link},"results":[{results}]}}')

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
