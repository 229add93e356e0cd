"""Serializer bases: strict inputs (unknown fields, read-only ones included, are errors, not
silently dropped) and outputs whose fields are built once per class."""

from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from rest_framework import ISO_8601, serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import api_settings

from neuronx.json_types import json_type_errors


class StrictInput(serializers.Serializer):
    # Query strings and form fields are text: DRF's fields read "5" and "true" from them. A JSON
    # body is typed (`neuronx.json_types`).
    reads_text = False

    def to_internal_value(self, data: Any) -> Any:
        unknown_errors: dict[str, list[ErrorDetail]] = {}
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            for name in sorted(set(data) - writable, key=str):
                unknown_errors[str(name)] = [
                    ErrorDetail("Unknown or read-only field.", code="unknown_field")
                ]
            if not self.reads_text:
                unknown_errors.update(json_type_errors(self.fields, data))
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


class FieldsBuiltOnce(serializers.Serializer):
    # A comment, not a docstring: drf-spectacular would publish it as every subclass's description.
    #
    # DRF deep-copies every declared field for every serializer instance, which costs more than
    # validating a small body. An input whose validation reads only its fields' declarations
    # (names, types, read-only), never their bound state, and which does not change its fields
    # per instance, can share one set per class, built for a context-free instance.

    _fields_once: ClassVar[Any]

    @cached_property
    def fields(self) -> Any:
        cls = type(self)
        built = cls.__dict__.get("_fields_once")
        if built is None:
            built = super(FieldsBuiltOnce, cls()).fields
            cls._fields_once = built
        return built


class StrictQuery(StrictInput):
    """Query-string filters: unknown parameters are errors too. Filters read, never write."""

    reads_text = True


# How FixedFieldsOutput renders one field: (field, name, attribute to read, kind, its argument).
_Planned = tuple[Any, str, str | None, object, Any]
_MISSING = object()
_SAME_TYPE, _AS_IS, _TIMESTAMP, _GENERIC = object(), object(), object(), object()


class FixedFieldsOutput(serializers.Serializer):
    # The OpenAPI generator reads a serializer's docstring (inherited ones included) as the
    # public description of its component, so this explanation is a comment.
    #
    # An output serializer whose fields are built once per class instead of per instance.
    # DRF builds (and, for a ModelSerializer, introspects the model for) every field of every
    # serializer instance, which costs more than rendering a small object; rendering then goes
    # through generic per-field lookups. The fields of an output that reads no `context` and does
    # not change its fields per instance are built once here, bound to a context-free instance, and
    # rendered with `Serializer.to_representation`'s rules: the same value for every field, with
    # shortcuts for plain attributes, strings, integers, booleans and timestamps.

    _plan: tuple[_Planned, ...] = ()
    _plan_for: type | None = None
    _current_zone: Any

    @classmethod
    def _render_plan(cls) -> tuple[_Planned, ...]:
        if cls.__dict__.get("_plan_for") is not cls:
            fields = [field for field in cls().fields.values() if not field.write_only]
            cls._plan = tuple(_planned(field) for field in fields)
            cls._plan_for = cls
        return cls._plan

    def to_representation(self, instance: Any) -> Any:
        ret: dict[str, Any] = {}
        by_attribute = not isinstance(instance, Mapping)
        by_key = type(instance) is dict  # rows read as plain dicts
        for field, name, attribute_name, kind, kind_arg in self._render_plan():
            attribute = _MISSING
            if attribute_name is not None and (by_attribute or by_key):
                if by_key:
                    attribute = instance.get(attribute_name, _MISSING)
                else:
                    try:
                        attribute = getattr(instance, attribute_name)
                    except Exception:
                        attribute = _MISSING  # DRF's lookup decides: default, null, skip or error
                if callable(attribute):
                    attribute = _MISSING  # DRF calls simple callables
            if attribute is _MISSING:
                try:
                    attribute = field.get_attribute(instance)
                except SkipField:
                    continue
            check_for_none = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
            if check_for_none is None:
                ret[name] = None
            elif (kind is _SAME_TYPE and type(attribute) is kind_arg) or kind is _AS_IS:
                ret[name] = attribute
            elif kind is _TIMESTAMP:
                ret[name] = self._timestamp(field, attribute, kind_arg)
            else:
                ret[name] = field.to_representation(attribute)
        return ret

    def _timestamp(self, field: Any, value: Any, zone: Any) -> Any:
        """`DateTimeField.to_representation` of an aware datetime in ISO 8601."""
        if type(value) is not datetime or value.utcoffset() is None:
            return field.to_representation(value)
        if zone is None:  # the current time zone, looked up once per rendering
            if "_current_zone" not in self.__dict__:
                self._current_zone = field.default_timezone()
            zone = self._current_zone
            if zone is None:
                return field.to_representation(value)
        try:
            text = value.astimezone(zone).isoformat()
        except OverflowError:
            return field.to_representation(value)
        return text[:-6] + "Z" if text.endswith("+00:00") else text


_SAME_TYPES = {
    serializers.CharField: str,
    serializers.IntegerField: int,
    serializers.BooleanField: bool,
}


def _planned(field: Any) -> _Planned:
    """(field, its name, the attribute to read directly, how to render, what that needs)."""
    attribute_name = field.source_attrs[0] if len(field.source_attrs) == 1 else None
    kind: object = _GENERIC
    kind_arg: Any = None
    if type(field) in _SAME_TYPES:
        kind, kind_arg = _SAME_TYPE, _SAME_TYPES[type(field)]
    elif type(field) is serializers.ReadOnlyField:
        kind = _AS_IS
    elif (
        type(field) is serializers.DateTimeField
        and getattr(field, "format", api_settings.DATETIME_FORMAT) == ISO_8601
    ):
        kind, kind_arg = _TIMESTAMP, getattr(field, "timezone", None)
        if hasattr(field, "timezone") and kind_arg is None:
            kind = _GENERIC  # an explicit `timezone=None`: DRF makes the value naive
    return field, field.field_name, attribute_name, kind, kind_arg
