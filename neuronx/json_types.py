"""JSON bodies are typed: a value of another JSON type than its field's is refused.

DRF's fields coerce (`1` is read as "1", `"yes"` and `0` as booleans) because they also read
form fields and query strings, which have no types. A JSON body has them, and the OpenAPI
document states them, so a body that sends `"notes": 0` or `"dry_run": "yes"` is a 422 with
DRF's own message, not a silently converted value. Inputs read from text (query strings, form
fields: `StrictInput.reads_text`) are left to DRF.
"""

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

_JSON_TYPES: tuple[tuple[type[serializers.Field], type, str], ...] = (
    (serializers.BooleanField, bool, "Must be a valid boolean."),
    (serializers.IntegerField, int, "A valid integer is required."),
    (serializers.CharField, str, "Not a valid string."),
)


def json_type_errors(
    fields: Mapping[str, serializers.Field], data: Any, prefix: str = ""
) -> dict[str, list[ErrorDetail]]:
    """The fields of a JSON body whose value has the wrong JSON type (`null` is left to DRF).

    Lists of nested inputs are checked item by item (`consents[0].granted`).
    """
    errors: dict[str, list[ErrorDetail]] = {}
    if not isinstance(data, Mapping):
        return errors
    for name, field in fields.items():
        value = data.get(name)
        if value is None or field.read_only:
            continue
        child = getattr(field, "child", None)
        if isinstance(child, serializers.Serializer) and isinstance(value, list):
            for index, item in enumerate(value):
                errors.update(json_type_errors(child.fields, item, f"{prefix}{name}[{index}]."))
            continue
        for field_class, json_type, message in _JSON_TYPES:
            if isinstance(field, field_class):
                wrong = not isinstance(value, json_type) or (
                    json_type is int and isinstance(value, bool)
                )
                if wrong:
                    errors[prefix + name] = [ErrorDetail(message, code="invalid")]
                break
    return errors
