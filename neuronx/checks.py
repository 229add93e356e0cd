"""System check: every `/v1/` operation declares its contract (neuronx.operations)."""

from typing import Any

from django.core import checks

from neuronx.routes import api_operations, api_routes
from neuronx.views import ApiViewSet

WRITE_METHODS = {"POST", "PATCH", "PUT"}


def undeclared_operations() -> list[str]:
    problems = []
    for route, pattern in api_routes():
        view_class = getattr(pattern.callback, "cls", None)
        actions = getattr(pattern.callback, "actions", None)
        if view_class is None or not issubclass(view_class, ApiViewSet) or not actions:
            problems.append(f"{route}: not served by an ApiViewSet with declared operations")
    for declared in api_operations():
        if declared.operation is None:
            problems.append(f"{declared.method} {declared.path} ({declared.handler}): no operation")
        elif declared.method in WRITE_METHODS and not declared.operation.idempotent:
            problems.append(
                f"{declared.method} {declared.path}: every POST/PATCH must be idempotent"
            )
    return problems


@checks.register(checks.Tags.urls)
def check_operations_declared(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(problem, hint="Decorate the action with @operation(...).", id="neuronx.E001")
        for problem in undeclared_operations()
    ]
