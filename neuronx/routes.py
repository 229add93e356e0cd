"""The one enumeration of `/v1/` operations, shared by the system check, the generated docs and
the tests that sweep every operation (authorization matrix, boundary audit)."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from neuronx.operations import Operation

# Routes under /v1/ that are not API operations: the schema and its docs page.
NON_OPERATION_ROUTES = {"schema", "docs"}
METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")

# `(?P<pk>[^/]+)` from routers and `<str:pk>` from path(); drf-spectacular names `pk` `id`.
_REGEX_PARAM = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_PATH_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass(frozen=True)
class DeclaredOperation:
    method: str
    path: str
    handler: str
    view_class: Any
    operation: Operation | None


def walk_routes(patterns: Any, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _param(match: re.Match[str]) -> str:
    return "{" + ("id" if match[1] == "pk" else match[1]) + "}"


def openapi_path(route: str) -> str:
    """`v1/^leads/(?P<pk>[^/]+)$` → `/v1/leads/{id}`, as the OpenAPI document spells it."""
    path = route.replace("^", "").replace("$", "")
    return "/" + _PATH_PARAM.sub(_param, _REGEX_PARAM.sub(_param, path))


def api_routes() -> Iterator[tuple[str, URLPattern]]:
    """(route, pattern) of every `/v1/` URL pattern that should be an API operation."""
    for route, pattern in walk_routes(get_resolver().url_patterns):
        if route.lstrip("^").startswith("v1/") and pattern.name not in NON_OPERATION_ROUTES:
            yield route, pattern


def api_operations() -> list[DeclaredOperation]:
    """Every /v1/ operation with its declaration (None when it has none), by path then method."""
    found = []
    for route, pattern in api_routes():
        view_class = getattr(pattern.callback, "cls", None)
        # DRF adds `head` (a mirror of `get`) to the shared actions map on the first request.
        actions = getattr(pattern.callback, "actions", None) or {}
        for method, action in actions.items():
            if method == "head":
                continue
            op = getattr(getattr(view_class, action, None), "operation", None)
            name = f"{getattr(view_class, '__name__', '?')}.{action}"
            found.append(
                DeclaredOperation(
                    method.upper(),
                    openapi_path(route),
                    name,
                    view_class,
                    op if isinstance(op, Operation) else None,
                )
            )
    return sorted(found, key=lambda o: (o.path, METHOD_ORDER.index(o.method)))
