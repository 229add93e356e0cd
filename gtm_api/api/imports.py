"""Category 1 (bulk): /v1/lead-imports — submit an import, follow it, fetch its row errors."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from gtm_api.import_serializers import (
    LeadImportInlineInput,
    LeadImportListQuery,
    LeadImportOutput,
    LeadImportRowErrorOutput,
    LeadImportUploadInput,
    LeadImportUrlInput,
)
from gtm_api.selectors.imports import (
    lead_import_errors,
    lead_import_failed_rows,
    lead_import_get,
    lead_import_list,
)
from gtm_api.services.imports import lead_import_submit
from neuronx.operations import NO_CONSENT, operation, read_operation
from neuronx.pagination import CursorPagination
from neuronx.views import ApiViewSet

IMPORT_ID = OpenApiParameter(
    "id", str, OpenApiParameter.PATH, description="Lead import id (`imp_…`)."
)
LOCATION = OpenApiParameter(
    "Location",
    str,
    OpenApiParameter.HEADER,
    response=[202],
    required=True,
    description="Path of the import, to poll with `GET`.",
)


class RowOrderPagination(CursorPagination):
    # Row errors are written in row order, so their ids ascend with the row.
    ordering = "id"


class LeadImportViewSet(ApiViewSet):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        operation_id="lead_imports_create",
        summary="Import leads in bulk",
        description="Upload a file (`multipart/form-data`: `file`, CSV or NDJSON), or send JSON "
        "with a `source_url` to fetch it from, or with up to 1000 `leads`. Answers `202` with "
        "the job; follow it at `Location`. Rows are validated exactly as `POST /v1/leads` "
        "validates a lead; invalid rows become row errors, not a failed request. See "
        "docs/imports.md for formats and limits.",
        parameters=[LOCATION],
        request={
            "multipart/form-data": LeadImportUploadInput,
            "application/json": PolymorphicProxySerializer(
                component_name="LeadImportJsonInput",
                serializers=[LeadImportUrlInput, LeadImportInlineInput],
                resource_type_field_name=None,
            ),
        },
        responses={202: LeadImportOutput},
        examples=[
            OpenApiExample(
                "From a URL, as upserts",
                request_only=True,
                media_type="application/json",
                value={"source_url": "https://crm.example.com/exports/leads.csv", "mode": "upsert"},
            ),
            OpenApiExample(
                "Inline leads, dry run",
                request_only=True,
                media_type="application/json",
                value={
                    "dry_run": True,
                    "leads": [
                        {
                            "email": "ada@analytical-engines.com",
                            "first_name": "Ada",
                            "last_name": "Lovelace",
                            "source": "crm_migration",
                        }
                    ],
                },
            ),
        ],
        tags=["Lead imports"],
    )
    @operation(
        rate_class="bulk",
        scope="leads:write",
        consent=NO_CONSENT,
        usage="lead.ingested",
        idempotent=True,
        has_body=True,
        errors=("too_many_imports",),
        consent_note="consents may be given per row",
    )
    def create(self, request: Request) -> Response:
        if self.is_upload(request):
            data = self.validated(LeadImportUploadInput)
        elif isinstance(request.data, dict) and "leads" in request.data:
            data = self.validated(LeadImportInlineInput)
        else:
            data = self.validated(LeadImportUrlInput)
        job = lead_import_submit(actor=self.actor, **data)
        return Response(
            LeadImportOutput(job).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/v1/lead-imports/{job.id}"},
        )

    @extend_schema(
        operation_id="lead_imports_list",
        summary="List lead imports",
        parameters=[LeadImportListQuery],
        responses={200: LeadImportOutput(many=True)},
        tags=["Lead imports"],
    )
    @read_operation(errors=("malformed_request", "validation_error"))
    def list(self, request: Request) -> Response:
        filters = self.query(LeadImportListQuery)
        return self.paginated(
            lead_import_list(tenant=self.actor.tenant, **filters), LeadImportOutput
        )

    @extend_schema(
        operation_id="lead_imports_retrieve",
        summary="Get a lead import: status, counts and progress",
        parameters=[IMPORT_ID],
        responses={200: LeadImportOutput},
        tags=["Lead imports"],
    )
    @read_operation(errors=("not_found",))
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(
            LeadImportOutput(lead_import_get(tenant=self.actor.tenant, import_id=pk)).data
        )

    @extend_schema(
        operation_id="lead_imports_errors_list",
        summary="List an import's row errors",
        description="One entry per problem, in row order: `{row, field, code, message}`.",
        parameters=[IMPORT_ID],
        responses={200: LeadImportRowErrorOutput(many=True)},
        tags=["Lead imports"],
    )
    @read_operation(errors=("not_found", "malformed_request", "validation_error"))
    @action(detail=True, methods=["get"], url_path="errors", pagination_class=RowOrderPagination)
    def errors(self, request: Request, pk: str) -> Response:
        rows = lead_import_errors(tenant=self.actor.tenant, import_id=pk)
        return self.paginated(rows, LeadImportRowErrorOutput)

    @extend_schema(
        operation_id="lead_imports_failed_rows",
        summary="Download an import's failed rows as CSV",
        description="The rows that failed, with an `error` column. For a CSV import the "
        "original columns are kept, so the file can be fixed and submitted again as it is.",
        parameters=[IMPORT_ID],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, UTF-8.")},
        tags=["Lead imports"],
    )
    @read_operation(errors=("not_found",))
    @action(detail=True, methods=["get"], url_path="failed-rows")
    def failed_rows(self, request: Request, pk: str) -> StreamingHttpResponse:
        job, content = lead_import_failed_rows(tenant=self.actor.tenant, import_id=pk)
        response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{job.id}-failed-rows.csv"'
        return response
