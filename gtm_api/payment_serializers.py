"""Payment input and output serializers. No input can set a payment's `status`."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gtm_api.currencies import CURRENCY_CODES
from gtm_api.models import Payment, PaymentStatus
from neuronx.serializers import StrictInput, StrictQuery


@extend_schema_field(
    {"type": "string", "enum": sorted(CURRENCY_CODES), "description": "ISO 4217 code (upper case)."}
)
class CurrencyField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        code = super().to_internal_value(data).upper()
        if code not in CURRENCY_CODES:
            raise serializers.ValidationError(
                f"{code!r} is not an ISO 4217 currency code.", code="invalid_currency"
            )
        return code


class PaymentCreateInput(StrictInput):
    lead_id = serializers.CharField(max_length=64)
    amount = serializers.IntegerField(
        min_value=1,
        max_value=10**15,
        help_text="Minor units of the currency (cents for EUR, yen for JPY, fils for KWD).",
    )
    currency = CurrencyField(max_length=3, min_length=3)
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, allow_null=True
    )
    appointment_id = serializers.CharField(max_length=64, required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> Any:
        # A JSON float such as 10.5 is not a count of minor units; DRF would truncate it.
        if isinstance(data, dict) and isinstance(data.get("amount"), float):
            raise serializers.ValidationError(
                {"amount": ["Send an integer count of minor units."]}, code="invalid"
            )
        return super().to_internal_value(data)


class PaymentCancelInput(StrictInput):
    pass


class PaymentOutput(serializers.ModelSerializer):
    class Meta:
        model = Payment
        fields = [
            "id",
            "lead_id",
            "appointment_id",
            "amount",
            "currency",
            "description",
            "status",
            "provider",
            "checkout_reference",
            "checkout_url",
            "expires_at",
            "failure_reason",
            "created_at",
            "updated_at",
            "verified_at",
        ]
        read_only_fields = fields


class PaymentListQuery(StrictQuery):
    lead_id = serializers.CharField(required=False, max_length=64)
    status = serializers.ChoiceField(required=False, choices=PaymentStatus.choices)
