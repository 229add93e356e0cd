"""The lead status document (category 6)."""

from typing import Any

from rest_framework import serializers

from consent.models import CONSENT_SCOPES
from gtm_api.appointment_serializers import AppointmentOutput
from gtm_api.models import Stage
from gtm_api.payment_serializers import PaymentOutput
from neuronx.serializers import FixedFieldsOutput


class FactorOutput(serializers.Serializer):
    name = serializers.CharField()
    points = serializers.IntegerField()
    reason = serializers.CharField()


class StatusQualificationOutput(serializers.Serializer):
    score = serializers.IntegerField()
    qualified = serializers.BooleanField()
    grade = serializers.CharField()
    factors = FactorOutput(many=True)
    model_version = serializers.CharField()
    qualified_at = serializers.DateTimeField(source="created_at")


class StatusAssignmentOutput(serializers.Serializer):
    owner = serializers.CharField()
    team = serializers.CharField()
    rule = serializers.CharField()
    strategy = serializers.CharField()
    reason = serializers.CharField()
    routed_at = serializers.DateTimeField(source="created_at")


class TransitionOutput(serializers.Serializer):
    from_stage = serializers.ChoiceField(choices=Stage.choices)
    to_stage = serializers.ChoiceField(choices=Stage.choices)
    cause = serializers.CharField()
    actor = serializers.CharField()
    request_id = serializers.CharField()
    at = serializers.DateTimeField()


class BoundaryOutput(serializers.Serializer):
    verified_paid = serializers.BooleanField()
    case_opened_at = serializers.DateTimeField(allow_null=True)
    case_id = serializers.CharField(allow_null=True)


class ConsentSummaryOutput(serializers.Serializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for scope in CONSENT_SCOPES:
            self.fields[scope] = serializers.ChoiceField(
                choices=["granted", "revoked", "expired", "not_captured"]
            )

    def to_representation(self, instance: Any) -> dict[str, str]:
        return {scope: instance[scope].state for scope in CONSENT_SCOPES}


class LeadStatusOutput(FixedFieldsOutput):
    lead_id = serializers.CharField(source="lead.id")
    stage = serializers.ChoiceField(choices=Stage.choices, source="lead.stage")
    score = serializers.IntegerField(allow_null=True, source="lead.score")
    owner = serializers.CharField(allow_null=True, source="lead.owner")
    qualification = StatusQualificationOutput(allow_null=True)
    assignment = StatusAssignmentOutput(allow_null=True)
    appointments = AppointmentOutput(many=True)
    payments = PaymentOutput(many=True)
    consent = ConsentSummaryOutput()
    boundary = BoundaryOutput()
    history = TransitionOutput(many=True)
