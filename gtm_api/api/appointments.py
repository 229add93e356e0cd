"""Category 4: appointments — create, reschedule, outcomes, reads. No availability logic."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from gtm_api.appointment_serializers import (
    AppointmentCreateInput,
    AppointmentListQuery,
    AppointmentOutput,
    AppointmentUpdateInput,
)
from gtm_api.selectors.appointments import appointment_get, appointment_list
from gtm_api.services.appointments import appointment_create, appointment_update
from neuronx.operations import operation, read_operation
from neuronx.views import ApiViewSet

APPOINTMENT_ID = OpenApiParameter(
    "id", str, OpenApiParameter.PATH, description="Appointment id (`apt_…`)."
)
CHANNEL_CONSENT_NOTE = "contact.phone for channel phone; contact.email for video and in_person"


class AppointmentViewSet(ApiViewSet):
    @extend_schema(
        operation_id="appointments_create",
        summary="Book an appointment",
        description="The lead must be `routed` or `appointment_scheduled`; it becomes "
        "`appointment_scheduled`. Consent: " + CHANNEL_CONSENT_NOTE + ".",
        request=AppointmentCreateInput,
        responses={201: AppointmentOutput},
        examples=[
            OpenApiExample(
                "Video call",
                request_only=True,
                value={
                    "lead_id": "lead_01JF3Q8Z6X7Y8Z9A0B1C2D3E4F",
                    "starts_at": "2026-12-03T15:00:00Z",
                    "ends_at": "2026-12-03T15:30:00Z",
                    "timezone": "Europe/Berlin",
                    "channel": "video",
                    "location": "https://meet.example.com/neuronx-demo",
                    "notes": "Product demo",
                },
            )
        ],
        tags=["Appointments"],
    )
    @operation(
        rate_class="write",
        scope="appointments:write",
        consent=("contact.phone", "contact.email"),
        consent_note=CHANNEL_CONSENT_NOTE,
        usage="appointment.created",
        idempotent=True,
        has_body=True,
        errors=("not_found", "lead_closed", "invalid_state_transition"),
    )
    def create(self, request: Request) -> Response:
        data = self.validated(AppointmentCreateInput)
        appointment = appointment_create(actor=self.actor, data=data)
        return Response(
            AppointmentOutput(appointment).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/v1/appointments/{appointment.id}"},
        )

    @extend_schema(
        operation_id="appointments_update",
        summary="Reschedule an appointment or record its outcome",
        description="Send new times/zone/channel/location/notes to reschedule, or `status` "
        "(`canceled`, `completed`, `no_show`). Canceling the lead's last scheduled appointment "
        "returns the lead to `routed`.",
        parameters=[APPOINTMENT_ID],
        request=AppointmentUpdateInput,
        responses={200: AppointmentOutput},
        examples=[
            OpenApiExample(
                "Reschedule",
                request_only=True,
                value={"starts_at": "2026-12-04T10:00:00Z", "ends_at": "2026-12-04T10:45:00Z"},
            ),
            OpenApiExample("Record the outcome", request_only=True, value={"status": "completed"}),
        ],
        tags=["Appointments"],
    )
    @operation(
        rate_class="write",
        scope="appointments:write",
        consent=("contact.phone", "contact.email"),
        consent_note="only when the channel changes: " + CHANNEL_CONSENT_NOTE,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("not_found", "lead_closed", "appointment_closed"),
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        appointment = appointment_get(tenant=self.actor.tenant, appointment_id=pk)
        data = self.validated(AppointmentUpdateInput, appointment=appointment)
        updated = appointment_update(actor=self.actor, appointment_id=pk, data=data)
        return Response(AppointmentOutput(updated).data)

    @extend_schema(
        operation_id="appointments_list",
        summary="List appointments",
        parameters=[AppointmentListQuery],
        responses={200: AppointmentOutput(many=True)},
        tags=["Appointments"],
    )
    @read_operation(errors=("malformed_request", "validation_error"))
    def list(self, request: Request) -> Response:
        filters = self.query(AppointmentListQuery)
        return self.paginated(
            appointment_list(tenant=self.actor.tenant, **filters), AppointmentOutput
        )

    @extend_schema(
        operation_id="appointments_retrieve",
        summary="Get an appointment",
        parameters=[APPOINTMENT_ID],
        responses={200: AppointmentOutput},
        tags=["Appointments"],
    )
    @read_operation(errors=("not_found",))
    def retrieve(self, request: Request, pk: str) -> Response:
        appointment = appointment_get(tenant=self.actor.tenant, appointment_id=pk)
        return Response(AppointmentOutput(appointment).data)
