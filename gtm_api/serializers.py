"""Lead and consent serializers: separate input and output classes."""

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from consent.models import CONSENT_SCOPES, ConsentRecord
from consent.selectors import ScopeState
from gtm_api.lead_fields import (
    COUNTRY_CODES,
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_TEXT,
    MAX_ATTRIBUTES,
    FieldInvalid,
    normalize_country,
    normalize_email,
    normalize_phone,
    validate_attributes,
)
from gtm_api.models import Lead, Stage
from neuronx.serializers import StrictInput, StrictQuery

CLOCK_SKEW = timedelta(minutes=5)
MAX_CONSENTS_PER_REQUEST = 20


def _check(func: Any, value: Any, *args: Any) -> Any:
    try:
        return func(value, *args)
    except FieldInvalid as exc:
        raise serializers.ValidationError(exc.message, code=exc.code) from None


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": MAX_ATTRIBUTES,
        "description": f"Flat object: ≤ {MAX_ATTRIBUTES} keys of ≤ {MAX_ATTRIBUTE_KEY} characters; "
        f"values are strings (≤ {MAX_ATTRIBUTE_TEXT}), numbers, booleans or null.",
        "additionalProperties": {
            "nullable": True,
            "anyOf": [
                {"type": "string", "maxLength": MAX_ATTRIBUTE_TEXT},
                {"type": "number"},
                {"type": "boolean"},
            ],
        },
        "example": {"utm_campaign": "spring", "employees": 120},
    }
)
class AttributesField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        return _check(validate_attributes, data)


@extend_schema_field(
    {
        "type": "string",
        "enum": sorted(COUNTRY_CODES),
        "description": "ISO 3166-1 alpha-2 (case-insensitive on input).",
    }
)
class CountryField(serializers.CharField):
    def to_internal_value(self, data: Any) -> Any:
        return _check(normalize_country, super().to_internal_value(data))


class ConsentRecordInput(StrictInput):
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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["captured_at"] > timezone.now() + CLOCK_SKEW:
            raise serializers.ValidationError(
                {"captured_at": ["Must not be in the future."]}, code="in_future"
            )
        expires_at = attrs.get("expires_at")
        if expires_at is not None and expires_at <= attrs["captured_at"]:
            raise serializers.ValidationError(
                {"expires_at": ["Must be after captured_at."]}, code="before_capture"
            )
        return attrs


class ConsentBatchInput(StrictInput):
    consents = serializers.ListField(
        child=ConsentRecordInput(), min_length=1, max_length=MAX_CONSENTS_PER_REQUEST
    )


class _LeadFieldsInput(StrictInput):
    external_id = serializers.CharField(max_length=255, required=False, allow_null=True)
    email = serializers.CharField(
        max_length=254, required=False, allow_null=True, help_text="Normalised to lower case."
    )
    phone = serializers.CharField(
        max_length=32,
        required=False,
        allow_null=True,
        help_text="E.164 (`+4930…`), or national form with `country`; stored as E.164.",
    )
    first_name = serializers.CharField(max_length=100)
    last_name = serializers.CharField(max_length=100)
    company = serializers.CharField(max_length=200, required=False, allow_null=True)
    job_title = serializers.CharField(max_length=200, required=False, allow_null=True)
    country = CountryField(required=False, allow_null=True)
    source = serializers.CharField(  # type: ignore[assignment]
        max_length=64, help_text="Channel, e.g. web_form, hubspot."
    )
    attributes = AttributesField(required=False)

    def validate_email(self, value: str | None) -> str | None:
        return None if value is None else _check(normalize_email, value)

    def _normalize_phone(self, attrs: dict[str, Any], country: str | None) -> None:
        if attrs.get("phone") is not None:
            try:
                attrs["phone"] = normalize_phone(attrs["phone"], country)
            except FieldInvalid as exc:
                raise serializers.ValidationError({"phone": [exc.message]}, code=exc.code) from None


class LeadCreateInput(_LeadFieldsInput):
    consents = serializers.ListField(
        child=ConsentRecordInput(), required=False, max_length=MAX_CONSENTS_PER_REQUEST
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        self._normalize_phone(attrs, attrs.get("country"))
        if attrs.get("email") is None and attrs.get("phone") is None:
            raise serializers.ValidationError(
                {"email": ["Give at least one of email or phone."]}, code="email_or_phone_required"
            )
        return attrs


class LeadUpdateInput(_LeadFieldsInput):
    """Contact fields only; every field optional, `null` clears an optional one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        lead: Lead = self.context["lead"]
        self._normalize_phone(attrs, attrs.get("country", lead.country))
        return attrs


class LeadOutput(serializers.ModelSerializer):
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
