"""System check for the Sales OS boundary: no public input can write a lead's stage or a
payment's status (only internal services move a lead to verified_paid)."""

from collections.abc import Iterator
from typing import Any

from django.core import checks

from neuronx.serializers import StrictInput, StrictQuery

FORBIDDEN_INPUT_FIELDS = {"stage", "verified_paid", "case", "case_id", "verified_at"}


def _subclasses(cls: type[StrictInput]) -> Iterator[type[StrictInput]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def boundary_violations() -> list[str]:
    problems = []
    for serializer_class in _subclasses(StrictInput):
        if issubclass(serializer_class, StrictQuery):
            continue
        fields = serializer_class().fields
        writable = {name for name, field in fields.items() if not field.read_only}
        forbidden = set(FORBIDDEN_INPUT_FIELDS)
        if serializer_class.__name__.startswith("Payment"):
            forbidden.add("status")
        for name in sorted(writable & forbidden):
            problems.append(f"{serializer_class.__module__}.{serializer_class.__name__}.{name}")
    return problems


@checks.register()
def check_boundary(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(
            f"Public input {path} can write a boundary field.",
            hint="Stage and payment status change only through internal services.",
            id="gtm_api.E001",
        )
        for path in boundary_violations()
    ]
