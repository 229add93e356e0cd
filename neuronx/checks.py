"""System check: every `/v1/` operation declares its contract (neuronx.operations)."""

from collections.abc import Iterator
from typing import Any

from django.core import checks
from django.urls import URLPattern, URLResolver, get_resolver

from neuronx.views import ApiViewSet

# Routes under /v1/ that are not API operations: the schema and its docs page.
NON_OPERATION_ROUTES = {"schema", "docs"}
WRITE_METHODS = {"post", "patch", "put"}


def _walk(patterns: Any, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def undeclared_operations() -> list[str]:
    problems = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if not route.lstrip("^").startswith("v1/") or pattern.name in NON_OPERATION_ROUTES:
            continue
        view_class = getattr(pattern.callback, "cls", None)
        actions = getattr(pattern.callback, "actions", None)
        if view_class is None or not issubclass(view_class, ApiViewSet) or not actions:
            problems.append(f"{route}: not served by an ApiViewSet with declared operations")
            continue
        for method, action in actions.items():
            op = getattr(getattr(view_class, action, None), "operation", None)
            if op is None:
                problems.append(
                    f"{method.upper()} {route} ({view_class.__name__}.{action}): no operation"
                )
            elif method in WRITE_METHODS and not op.idempotent:
                problems.append(f"{method.upper()} {route}: every POST/PATCH must be idempotent")
    return problems


@checks.register(checks.Tags.urls)
def check_operations_declared(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(problem, hint="Decorate the action with @operation(...).", id="neuronx.E001")
        for problem in undeclared_operations()
    ]
