"""Category 6: the lead status document."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gtm_api.selectors.status import lead_status_rows
from gtm_api.status_serializers import LeadStatusOutput, lead_status_document
from neuronx.operations import read_operation
from neuronx.views import ApiViewSet


class LeadStatusViewSet(ApiViewSet):
    @extend_schema(
        operation_id="leads_status",
        summary="Get a lead's lifecycle status",
        description="Stage, latest qualification and assignment, appointments, payments, "
        "consent summary, the boundary (`verified_paid`, `case_opened_at`) and every stage "
        "transition, in a fixed number of queries.",
        parameters=[OpenApiParameter("id", str, OpenApiParameter.PATH, description="Lead id.")],
        responses={200: LeadStatusOutput},
        tags=["Status"],
    )
    @read_operation(errors=("not_found",))
    @action(detail=True, methods=["get"])
    def status(self, request: Request, pk: str) -> Response:
        # The schema is `LeadStatusOutput`'s; the document is built from plain rows, as it
        # would render them (see `lead_status_document`).
        rows = lead_status_rows(tenant=self.actor.tenant, lead_id=pk)
        return Response(lead_status_document(rows))
