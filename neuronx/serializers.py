"""Input serializer base: unknown fields (read-only ones included) are errors, not silently dropped."""

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail


class StrictInput(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        unknown_errors: dict[str, list[ErrorDetail]] = {}
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            for name in sorted(set(data) - writable, key=str):
                unknown_errors[str(name)] = [
                    ErrorDetail("Unknown or read-only field.", code="unknown_field")
                ]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown_errors and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**unknown_errors, **exc.detail}) from None
            raise
        if unknown_errors:
            raise serializers.ValidationError(unknown_errors)
        return value

    def create(self, validated_data: Any) -> Any:  # inputs never save; services do
        raise NotImplementedError

    def update(self, instance: Any, validated_data: Any) -> Any:
        raise NotImplementedError


class StrictQuery(StrictInput):
    """Query-string filters: unknown parameters are errors too. Filters read, never write."""
