"""The lead status document (category 6)."""

from datetime import datetime
from typing import Any

from rest_framework import serializers

from consent.models import CONSENT_SCOPES
from gtm_api.appointment_serializers import AppointmentOutput
from gtm_api.models import Stage
from gtm_api.payment_serializers import PaymentOutput
from gtm_api.selectors.status import (
    APPOINTMENTS,
    ASSIGNMENT,
    HISTORY,
    PAYMENTS,
    QUALIFICATION,
    LeadStatusRows,
)
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


# -- the document the API sends ---------------------------------------------------------------
#
# `LeadStatusOutput` describes the document (the OpenAPI schema reads it) and renders it from
# `lead_status`'s model instances. The API renders it from `lead_status_rows`' plain rows
# instead, byte for byte what `LeadStatusOutput` gives for the same lead (tested): the rows
# hold the values its fields return unchanged (text, integers, booleans, null), except
# timestamps, rendered here as DRF's `DateTimeField` renders them.

_DATETIME = serializers.DateTimeField()  # for the timestamps the shortcut below leaves to DRF


def lead_status_document(rows: LeadStatusRows) -> dict[str, Any]:
    """`LeadStatusOutput(lead_status(...)).data` for the same lead, from its plain rows."""
    zone = _DATETIME.default_timezone()

    def stamp(value: datetime | None) -> str | None:
        # `DateTimeField.to_representation` in ISO 8601: the time in the current time zone,
        # UTC as `Z`.
        if value is None:
            return None
        if zone is None or value.utcoffset() is None:
            return _DATETIME.to_representation(value)  # type: ignore[no-any-return]
        try:
            text = value.astimezone(zone).isoformat()
        except OverflowError:
            return _DATETIME.to_representation(value)  # type: ignore[no-any-return]
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    def stamped(row: dict[str, Any], times: frozenset[str]) -> dict[str, Any]:
        for field in times:
            row[field] = stamp(row[field])
        return row

    qualification = rows.qualification
    if qualification is not None:
        qualification = stamped(dict(qualification), QUALIFICATION.times)
        qualification["factors"] = [_factor(factor) for factor in qualification["factors"]]
    assignment = rows.assignment
    if assignment is not None:
        assignment = stamped(dict(assignment), ASSIGNMENT.times)
    return {
        "lead_id": rows.lead_id,
        "stage": rows.stage,
        "score": rows.score,
        "owner": rows.owner,
        "qualification": qualification,
        "assignment": assignment,
        "appointments": [stamped(dict(row), APPOINTMENTS.times) for row in rows.appointments],
        "payments": [stamped(dict(row), PAYMENTS.times) for row in rows.payments],
        "consent": {scope: rows.consent[scope] for scope in CONSENT_SCOPES},
        "boundary": {
            "verified_paid": rows.stage == Stage.VERIFIED_PAID,
            "case_opened_at": stamp(rows.case_opened_at),
            "case_id": rows.case_id,
        },
        "history": [stamped(dict(row), HISTORY.times) for row in rows.history],
    }


_FACTOR = FactorOutput()


def _factor(factor: Any) -> Any:
    # Scoring stores factors of this shape; anything else is rendered by DRF's own rules.
    if (
        type(factor) is dict
        and len(factor) == 3
        and type(factor.get("name")) is str
        and type(factor.get("points")) is int
        and type(factor.get("reason")) is str
    ):
        return {"name": factor["name"], "points": factor["points"], "reason": factor["reason"]}
    return _FACTOR.to_representation(factor)
