"""Lead and consent serializers: separate input and output classes.

The lead and consent inputs are validated by the plain functions of `gtm_api.lead_fields`, the
same code the bulk importer runs per row; their declared fields describe them in the OpenAPI
document (and name the writable fields).
"""

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from consent.models import CONSENT_SCOPES, ConsentRecord
from consent.selectors import ScopeState
from gtm_api.lead_fields import (
    CLOCK_SKEW,
    COUNTRY_CODES,
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_TEXT,
    MAX_ATTRIBUTES,
    MAX_CONSENTS_PER_REQUEST,
    MAX_LENGTHS,
    FieldError,
    consent_record_validate,
    lead_row_validate,
)
from gtm_api.models import Lead, Stage
from neuronx.json_types import json_type_errors
from neuronx.serializers import FieldsBuiltOnce, FixedFieldsOutput, StrictInput, StrictQuery

__all__ = ["CLOCK_SKEW", "MAX_CONSENTS_PER_REQUEST"]  # re-exported: the docs quote them


def raise_field_errors(errors: list[FieldError]) -> None:
    """Raise DRF's ValidationError for plain-function field errors (the problem's `errors`)."""
    detail: dict[str, list[ErrorDetail]] = {}
    for error in errors:
        detail.setdefault(error.field or "non_field_errors", []).append(
            ErrorDetail(error.message, code=error.code)
        )
    raise serializers.ValidationError(detail)


# An input validated by a plain function that the bulk importer shares. No docstring on
# purpose: drf-spectacular would show it as the description of every subclass.
class PlainValidatedInput(StrictInput):
    def plain_validate(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        raise NotImplementedError

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            message = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
            raise_field_errors([FieldError("", "invalid", message)])
        clean, errors = self.plain_validate(data)
        # A JSON body is typed (file rows, validated by the same function, are not).
        typed = json_type_errors(self.fields, data)
        if typed:
            errors = [error for error in errors if error.field not in typed]
            errors += [FieldError(name, str(d[0].code), str(d[0])) for name, d in typed.items()]
        if errors:
            raise_field_errors(errors)
        return clean


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": MAX_ATTRIBUTES,
        "description": f"Flat object: ≤ {MAX_ATTRIBUTES} keys of ≤ {MAX_ATTRIBUTE_KEY} characters; "
        f"values are strings (≤ {MAX_ATTRIBUTE_TEXT}), numbers, booleans or null.",
        "additionalProperties": {
            "nullable": True,
            "anyOf": [
                {"type": "string", "maxLength": MAX_ATTRIBUTE_TEXT, "pattern": "^[^\\u0000]*$"},
                {"type": "number"},
                {"type": "boolean"},
            ],
        },
        "example": {"utm_campaign": "spring", "employees": 120},
    }
)
class AttributesField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "type": "string",
        "enum": sorted(COUNTRY_CODES),
        "description": "ISO 3166-1 alpha-2 (case-insensitive on input).",
    }
)
class CountryField(serializers.CharField):
    pass


class ConsentRecordInput(FieldsBuiltOnce, PlainValidatedInput):
    scope = serializers.ChoiceField(choices=CONSENT_SCOPES)
    granted = serializers.BooleanField()
    captured_at = serializers.DateTimeField(help_text="When the consent was captured (RFC 3339).")
    source = serializers.CharField(  # type: ignore[assignment]
        max_length=64, help_text="Where it was captured, e.g. web_form."
    )
    evidence = serializers.CharField(
        max_length=2000,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Proof: form version, checkbox text, recording URL…",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def plain_validate(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        return consent_record_validate(data)


class ConsentBatchInput(StrictInput):
    consents = serializers.ListField(
        child=ConsentRecordInput(), min_length=1, max_length=MAX_CONSENTS_PER_REQUEST
    )


def _max(name: str) -> int:
    length = MAX_LENGTHS[name]
    assert length is not None
    return length


class _LeadFieldsInput(PlainValidatedInput):
    external_id = serializers.CharField(
        max_length=_max("external_id"), required=False, allow_null=True
    )
    email = serializers.EmailField(
        max_length=_max("email"),
        required=False,
        allow_null=True,
        help_text="Normalised to lower case.",
    )
    phone = serializers.CharField(
        max_length=_max("phone"),
        required=False,
        allow_null=True,
        help_text="E.164 (`+4930…`), or national form with `country`; stored as E.164.",
    )
    first_name = serializers.CharField(max_length=_max("first_name"))
    last_name = serializers.CharField(max_length=_max("last_name"))
    company = serializers.CharField(max_length=_max("company"), required=False, allow_null=True)
    job_title = serializers.CharField(max_length=_max("job_title"), required=False, allow_null=True)
    country = CountryField(required=False, allow_null=True)
    source = serializers.CharField(  # type: ignore[assignment]
        max_length=_max("source"), help_text="Channel, e.g. web_form, hubspot."
    )
    attributes = AttributesField(required=False)


class LeadCreateInput(FieldsBuiltOnce, _LeadFieldsInput):
    # At least one of email and phone, and not as null.
    openapi_constraints = {
        "anyOf": [
            {"required": [name], "properties": {name: {"type": "string"}}}
            for name in ("email", "phone")
        ]
    }

    consents = serializers.ListField(
        child=ConsentRecordInput(), required=False, max_length=MAX_CONSENTS_PER_REQUEST
    )

    def plain_validate(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        return lead_row_validate(data)


class LeadUpdateInput(_LeadFieldsInput):
    """Contact fields only; every field optional, `null` clears an optional one."""

    # A lead keeps at least one of email and phone: both cannot be cleared at once.
    openapi_constraints = {
        "not": {
            "required": ["email", "phone"],
            "properties": {name: {"nullable": True, "enum": [None]} for name in ("email", "phone")},
        }
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False

    def plain_validate(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        lead: Lead = self.context["lead"]
        return lead_row_validate(data, partial=True, default_country=lead.country)


class LeadOutput(FixedFieldsOutput, serializers.ModelSerializer):
    attributes = AttributesField()

    class Meta:
        model = Lead
        fields = [
            "id",
            "external_id",
            "email",
            "phone",
            "first_name",
            "last_name",
            "company",
            "job_title",
            "country",
            "source",
            "attributes",
            "stage",
            "score",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class LeadListQuery(StrictQuery):
    email = serializers.CharField(required=False, max_length=254)
    external_id = serializers.CharField(required=False, max_length=255)
    stage = serializers.ChoiceField(required=False, choices=Stage.choices)
    created_after = serializers.DateTimeField(required=False)
    updated_after = serializers.DateTimeField(required=False)

    def validate_email(self, value: str) -> str:
        return value.strip().lower()


class ConsentRecordOutput(serializers.ModelSerializer):
    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "scope",
            "granted",
            "captured_at",
            "source",
            "evidence",
            "expires_at",
            "recorded_at",
        ]
        read_only_fields = fields


class ConsentScopeStateOutput(serializers.Serializer):
    state = serializers.ChoiceField(choices=["granted", "revoked", "expired", "not_captured"])
    granted = serializers.BooleanField()
    captured_at = serializers.DateTimeField(allow_null=True, source="record.captured_at")
    expires_at = serializers.DateTimeField(allow_null=True, source="record.expires_at")
    source = serializers.CharField(  # type: ignore[assignment]
        allow_null=True, source="record.source"
    )
    record_id = serializers.CharField(allow_null=True, source="record.id")


class ConsentCurrentOutput(serializers.Serializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for scope in CONSENT_SCOPES:
            self.fields[scope] = ConsentScopeStateOutput()

    def to_representation(self, instance: dict[str, ScopeState]) -> dict[str, Any]:
        # Scope names contain dots, which DRF would read as attribute paths.
        return {scope: ConsentScopeStateOutput(instance[scope]).data for scope in CONSENT_SCOPES}


class ConsentLedgerOutput(serializers.Serializer):
    lead_id = serializers.CharField()
    current = ConsentCurrentOutput()
    history = ConsentRecordOutput(many=True)


def consent_ledger_data(lead: Lead, current: dict[str, ScopeState], history: list[Any]) -> Any:
    return ConsentLedgerOutput({"lead_id": lead.id, "current": current, "history": history}).data
