"""Category 2 (qualification): POST /v1/leads/{id}/qualify."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gtm_api.api.leads import LEAD_ID
from gtm_api.models import Stage
from gtm_api.services.qualification import QUALIFY_CONSENT, lead_qualify
from neuronx.operations import operation
from neuronx.serializers import StrictInput
from neuronx.views import ApiViewSet


class QualifyInput(StrictInput):
    """No fields: send `{}` or no body. The lead's own fields are what gets scored."""


class QualificationFactorOutput(serializers.Serializer):
    name = serializers.CharField(help_text="The scoring rule.")
    points = serializers.IntegerField(
        help_text="Points this rule awarded: its points when met (may be negative), else 0."
    )
    reason = serializers.CharField(
        help_text="Why: the rule's reason when met, `Not met: …` with the failed conditions."
    )


class QualificationOutput(serializers.Serializer):
    id = serializers.CharField(help_text="Qualification id (`qual_…`).")
    lead_id = serializers.CharField()
    score = serializers.IntegerField(min_value=0, max_value=100)
    qualified = serializers.BooleanField()
    grade = serializers.CharField(help_text="`A`, `B`, `C` (model thresholds) or `D`.")
    factors = QualificationFactorOutput(many=True)
    model_version = serializers.CharField(
        help_text="`default-1` for the built-in model, else `<name>-<version>`."
    )
    stage = serializers.ChoiceField(
        choices=[Stage.QUALIFIED, Stage.DISQUALIFIED],
        source="lead.stage",
        help_text="The lead's stage after qualifying.",
    )
    qualified_at = serializers.DateTimeField(source="created_at")


QUALIFY_REQUEST_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "maxProperties": 0,
    "description": "Optional and empty: send `{}` or no body. Any field is a 422.",
}
QUALIFY_EXAMPLE = OpenApiExample(
    "A complete business lead",
    response_only=True,
    status_codes=["200"],
    value={
        "id": "qual_01JF3Q8Z6X7Y8Z9A0B1C2D3E4F",
        "lead_id": "lead_01JF3Q8Z6X7Y8Z9A0B1C2D3E4F",
        "score": 90,
        "qualified": True,
        "grade": "A",
        "factors": [
            {"name": "business_email", "points": 25, "reason": "Business email domain"},
            {"name": "company", "points": 15, "reason": "Company given"},
            {"name": "job_title", "points": 10, "reason": "Job title given"},
            {"name": "senior_title", "points": 15, "reason": "Senior decision-maker title"},
            {"name": "phone", "points": 15, "reason": "Phone number given"},
            {"name": "country", "points": 10, "reason": "Country given"},
            {
                "name": "high_intent_source",
                "points": 0,
                "reason": "Not met: High-intent source "
                '(source in ["demo_request", "referral", "contact_sales"])',
            },
        ],
        "model_version": "default-1",
        "stage": "qualified",
        "qualified_at": "2026-11-01T09:31:02.417000Z",
    },
)


class QualificationViewSet(ApiViewSet):
    @extend_schema(
        operation_id="leads_qualify",
        summary="Qualify a lead",
        description="Scores the lead with the tenant's scoring model (or the documented default, "
        "`default-1`), stores the result, sets the lead's `score` and moves it to `qualified` or "
        "`disqualified`. Every rule of the model is one factor with the points it gave and why. "
        "Allowed in stages `new`, `qualified` and `disqualified` (re-qualifying is allowed). "
        "Scoring is profiling: the lead must have granted `data.profiling`. "
        "Emits `lead.qualified` or `lead.disqualified`. Send `{}` or no body.",
        parameters=[LEAD_ID],
        # drf-spectacular omits a request body for a serializer without fields; say what
        # `QualifyInput` accepts: nothing but an empty object, and the body itself is optional.
        request={"application/json": QUALIFY_REQUEST_SCHEMA},
        responses={200: QualificationOutput},
        examples=[QUALIFY_EXAMPLE],
        tags=["Qualification"],
    )
    @operation(
        rate_class="write",
        scope="leads:qualify",
        consent=QUALIFY_CONSENT,
        usage="lead.qualified",
        idempotent=True,
        has_body=True,
        errors=("not_found", "lead_closed", "invalid_state_transition"),
    )
    @action(detail=True, methods=["post"])
    def qualify(self, request: Request, pk: str) -> Response:
        self.validated(QualifyInput)
        qualification = lead_qualify(actor=self.actor, lead_id=pk)
        return Response(QualificationOutput(qualification).data)
