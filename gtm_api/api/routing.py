"""Category 3, routing: POST /v1/leads/{id}/route."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gtm_api.api.leads import LEAD_ID
from gtm_api.models import Assignment, RoutingStrategy, Stage
from gtm_api.services.routing import lead_route
from neuronx.operations import NO_CONSENT, operation
from neuronx.serializers import StrictInput
from neuronx.views import ApiViewSet


class RouteInput(StrictInput):
    """No fields: the tenant's routing rules decide. Send `{}` or no body at all."""


class RouteOutput(serializers.Serializer):
    lead_id = serializers.CharField(help_text="The routed lead.")
    owner = serializers.CharField(help_text="The key of the rep who now owns the lead.")
    team = serializers.CharField(help_text="The key of the rep's team.")
    rule = serializers.CharField(
        help_text="The name of the rule that matched, or `fallback` when the fallback routed it."
    )
    strategy = serializers.ChoiceField(choices=RoutingStrategy.choices)
    reason = serializers.CharField(
        help_text="Human-readable trace: each rule tried, why it was skipped or matched, and how "
        "the strategy chose the rep."
    )
    stage = serializers.ChoiceField(choices=Stage.choices, source="lead.stage")
    routed_at = serializers.DateTimeField(source="created_at")


ROUTE_EXAMPLE = OpenApiExample(
    "Routed by the catch-all rule",
    response_only=True,
    value={
        "lead_id": "lead_01JF3Q8Z6X7Y8Z9A0B1C2D3E4F",
        "owner": "ada",
        "team": "inbound",
        "rule": "catch-all",
        "strategy": "round_robin",
        "reason": "rule 'enterprise-grade-a' skipped: grade eq \"A\" not met; rule 'catch-all' matched "
        "→ team inbound, round_robin → ada (turn 1 of 2 active reps)",
        "stage": "routed",
        "routed_at": "2026-11-01T09:31:00.000000Z",
    },
)


class RoutingViewSet(ApiViewSet):
    @extend_schema(
        operation_id="leads_route",
        summary="Route a lead to a rep",
        description="Assigns a `qualified` lead (or re-routes a `routed` one) to a rep with the "
        "tenant's routing rules: the first rule whose conditions hold picks the team and the "
        "strategy (`round_robin`, `weighted`, `least_loaded`), else the fallback; a team with no "
        "available rep overflows to the fallback. The body is empty. Rules are configured by the "
        "internal team; a tenant without any answers `409 routing_not_configured`.",
        parameters=[LEAD_ID],
        request=RouteInput,
        responses={200: RouteOutput},
        examples=[ROUTE_EXAMPLE],
        tags=["Routing"],
    )
    @operation(
        rate_class="write",
        scope="leads:route",
        consent=NO_CONSENT,
        usage="lead.routed",
        idempotent=True,
        has_body=True,
        errors=(
            "not_found",
            "lead_closed",
            "invalid_state_transition",
            "routing_not_configured",
            "no_rep_available",
        ),
    )
    @action(detail=True, methods=["post"])
    def route(self, request: Request, pk: str) -> Response:
        self.validated(RouteInput)
        assignment: Assignment = lead_route(actor=self.actor, lead_id=pk)
        return Response(RouteOutput(assignment).data)
