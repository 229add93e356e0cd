"""Category 5: payment initiation, cancellation and reads. Never verification."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from gtm_api.payment_serializers import (
    PaymentCancelInput,
    PaymentCreateInput,
    PaymentListQuery,
    PaymentOutput,
)
from gtm_api.selectors.payments import payment_get, payment_list
from gtm_api.services.payments import payment_cancel, payment_initiate
from neuronx.operations import NO_CONSENT, operation, read_operation
from neuronx.views import ApiViewSet

PAYMENT_ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="Payment id (`pay_…`).")


class PaymentViewSet(ApiViewSet):
    @extend_schema(
        operation_id="payments_create",
        summary="Initiate a payment",
        description="Creates a checkout with the payment provider and answers `status: "
        "initiated` with its `checkout_reference` and `checkout_url`. The lead becomes "
        "`payment_pending`. Verification is internal: no API call can mark a payment paid.",
        request=PaymentCreateInput,
        responses={201: PaymentOutput},
        examples=[
            OpenApiExample(
                "Onboarding fee",
                request_only=True,
                value={
                    "lead_id": "lead_01JF3Q8Z6X7Y8Z9A0B1C2D3E4F",
                    "amount": 49900,
                    "currency": "EUR",
                    "description": "Onboarding package",
                },
            )
        ],
        tags=["Payments"],
    )
    @operation(
        rate_class="write",
        scope="payments:write",
        consent=("payment.processing",),
        usage="payment.initiated",
        idempotent=True,
        has_body=True,
        errors=("not_found", "lead_closed", "invalid_state_transition"),
    )
    def create(self, request: Request) -> Response:
        data = self.validated(PaymentCreateInput)
        payment = payment_initiate(actor=self.actor, data=data)
        return Response(
            PaymentOutput(payment).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/v1/payments/{payment.id}"},
        )

    @extend_schema(
        operation_id="payments_cancel",
        summary="Cancel an initiated payment",
        description="The lead returns to the stage it had before the payment.",
        parameters=[PAYMENT_ID],
        request=PaymentCancelInput,
        responses={200: PaymentOutput},
        tags=["Payments"],
    )
    @operation(
        rate_class="write",
        scope="payments:write",
        consent=NO_CONSENT,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("not_found", "lead_closed", "payment_not_cancelable"),
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        payment_get(tenant=self.actor.tenant, payment_id=pk)
        self.validated(PaymentCancelInput)
        return Response(PaymentOutput(payment_cancel(actor=self.actor, payment_id=pk)).data)

    @extend_schema(
        operation_id="payments_list",
        summary="List payments",
        parameters=[PaymentListQuery],
        responses={200: PaymentOutput(many=True)},
        tags=["Payments"],
    )
    @read_operation(errors=("malformed_request", "validation_error"))
    def list(self, request: Request) -> Response:
        filters = self.query(PaymentListQuery)
        return self.paginated(payment_list(tenant=self.actor.tenant, **filters), PaymentOutput)

    @extend_schema(
        operation_id="payments_retrieve",
        summary="Get a payment",
        parameters=[PAYMENT_ID],
        responses={200: PaymentOutput},
        tags=["Payments"],
    )
    @read_operation(errors=("not_found",))
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(PaymentOutput(payment_get(tenant=self.actor.tenant, payment_id=pk)).data)
