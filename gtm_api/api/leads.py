"""Category 1 (single ingestion) and 6 (lead reads): /v1/leads."""

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from consent.selectors import consent_history, consent_state
from gtm_api.selectors.leads import lead_get, lead_list, lead_text
from gtm_api.serializers import (
    ConsentBatchInput,
    ConsentLedgerOutput,
    ConsentRecordInput,
    LeadCreateInput,
    LeadListQuery,
    LeadOutput,
    LeadUpdateInput,
    consent_ledger_data,
)
from gtm_api.services.consents import lead_consents_append
from gtm_api.services.leads import lead_create, lead_update
from neuronx.operations import NO_CONSENT, operation, read_operation
from neuronx.views import ApiViewSet

CREATE_EXAMPLE = OpenApiExample(
    "A business lead with consent",
    request_only=True,
    value={
        "external_id": "crm-48151",
        "email": "ada@analytical-engines.com",
        "phone": "+442079460958",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "job_title": "VP Engineering",
        "country": "GB",
        "source": "web_form",
        "attributes": {"utm_campaign": "spring"},
        "consents": [
            {
                "scope": "data.profiling",
                "granted": True,
                "captured_at": "2026-11-01T09:30:00Z",
                "source": "web_form",
            },
        ],
    },
)
CONSENT_EXAMPLE = OpenApiExample(
    "Grant email contact",
    request_only=True,
    value={
        "scope": "contact.email",
        "granted": True,
        "captured_at": "2026-11-01T09:30:00Z",
        "source": "web_form",
        "evidence": "Checkbox v3: 'Email me about my demo'",
    },
)
LEAD_ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="Lead id (`lead_…`).")


class LeadViewSet(ApiViewSet):
    @extend_schema(
        operation_id="leads_create",
        summary="Create a lead",
        request=LeadCreateInput,
        responses={201: LeadOutput},
        examples=[CREATE_EXAMPLE],
        tags=["Leads"],
    )
    @operation(
        rate_class="write",
        scope="leads:write",
        consent=NO_CONSENT,
        usage="lead.ingested",
        idempotent=True,
        has_body=True,
        errors=("lead_exists",),
    )
    def create(self, request: Request) -> Response:
        data = self.validated(LeadCreateInput)
        lead = lead_create(actor=self.actor, data=data)
        return Response(
            LeadOutput(lead).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/v1/leads/{lead.id}"},
        )

    @extend_schema(
        operation_id="leads_list",
        summary="List leads",
        parameters=[LeadListQuery],
        responses={200: LeadOutput(many=True)},
        tags=["Leads"],
    )
    @read_operation(errors=("malformed_request", "validation_error"))
    def list(self, request: Request) -> Response:
        filters = self.query(LeadListQuery)
        return self.paginated(lead_list(tenant=self.actor.tenant, **filters), LeadOutput)

    @extend_schema(
        operation_id="leads_retrieve",
        summary="Get a lead",
        parameters=[LEAD_ID],
        responses={200: LeadOutput},
        tags=["Leads"],
    )
    @read_operation(errors=("not_found",))
    def retrieve(self, request: Request, pk: str) -> Response:
        text = lead_text(tenant=self.actor.tenant, lead_id=pk)
        if text is not None:  # already rendered as `LeadOutput` renders the lead
            return Response(text)
        return Response(LeadOutput(lead_get(tenant=self.actor.tenant, lead_id=pk)).data)

    @extend_schema(
        operation_id="leads_update",
        summary="Update a lead's contact fields",
        parameters=[LEAD_ID],
        request=LeadUpdateInput,
        responses={200: LeadOutput},
        examples=[
            OpenApiExample(
                "A new job title and a national phone number",
                request_only=True,
                value={"job_title": "CTO", "phone": "030 901820", "country": "DE"},
            )
        ],
        tags=["Leads"],
    )
    @operation(
        rate_class="write",
        scope="leads:write",
        consent=NO_CONSENT,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("not_found", "lead_exists", "lead_closed"),
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        lead = lead_get(tenant=self.actor.tenant, lead_id=pk)
        data = self.validated(LeadUpdateInput, lead=lead)
        return Response(LeadOutput(lead_update(actor=self.actor, lead_id=pk, data=data)).data)

    @extend_schema(
        operation_id="leads_consents_list",
        summary="Get a lead's consent state and history",
        parameters=[LEAD_ID],
        responses={200: ConsentLedgerOutput},
        tags=["Consent"],
    )
    @read_operation(errors=("not_found",))
    @action(detail=True, methods=["get"], url_path="consents")
    def consents(self, request: Request, pk: str) -> Response:
        return Response(self._ledger(pk))

    @extend_schema(
        operation_id="leads_consents_create",
        summary="Append consent records",
        description='Send one record, or `{"consents": [...]}` with up to 20. Records are never '
        "changed: a revocation is a new record with `granted: false`. Answers with the ledger.",
        parameters=[LEAD_ID],
        request=PolymorphicProxySerializer(
            component_name="ConsentAppendInput",
            serializers=[ConsentRecordInput, ConsentBatchInput],
            resource_type_field_name=None,
        ),
        responses={201: ConsentLedgerOutput},
        examples=[CONSENT_EXAMPLE],
        tags=["Consent"],
    )
    @operation(
        rate_class="write",
        scope="leads:write",
        consent=NO_CONSENT,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("not_found", "lead_closed"),
    )
    @consents.mapping.post
    def append_consents(self, request: Request, pk: str) -> Response:
        lead_get(tenant=self.actor.tenant, lead_id=pk)
        body: Any = request.data
        if isinstance(body, dict) and "consents" in body:
            records = self.validated(ConsentBatchInput)["consents"]
        else:
            records = [self.validated(ConsentRecordInput)]
        lead_consents_append(actor=self.actor, lead_id=pk, records=records)
        return Response(
            self._ledger(pk),
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/v1/leads/{pk}/consents"},
        )

    def _ledger(self, lead_id: str) -> Any:
        lead = lead_get(tenant=self.actor.tenant, lead_id=lead_id)
        history = consent_history(lead=lead)
        return consent_ledger_data(lead, consent_state(lead=lead, history=history), history)
