"""Category 7: webhook subscriptions, their delivery log, test pings and redelivery."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from neuronx.operations import NO_CONSENT, operation, read_operation
from neuronx.views import ApiViewSet
from webhooks.selectors import delivery_get, delivery_list, subscription_get, subscription_list
from webhooks.serializers import (
    DeliveryDetailOutput,
    DeliveryListQuery,
    DeliveryOutput,
    WebhookRotateSecretInput,
    WebhookSubscriptionCreateInput,
    WebhookSubscriptionOutput,
    WebhookSubscriptionSecretOutput,
    WebhookSubscriptionUpdateInput,
    WebhookTestInput,
)
from webhooks.services import (
    delivery_redeliver,
    subscription_create,
    subscription_delete,
    subscription_rotate_secret,
    subscription_test,
    subscription_update,
)

SUBSCRIPTION_ID = OpenApiParameter(
    "id", str, OpenApiParameter.PATH, description="Subscription id (`whsub_…`)."
)
DELIVERY_ID = OpenApiParameter(
    "delivery_id", str, OpenApiParameter.PATH, description="Delivery id (`whdel_…`)."
)
EMPTY_BODY = {
    "application/json": {
        "type": "object",
        "additionalProperties": False,
        "maxProperties": 0,
        "description": "Optional and empty: send `{}` or no body. Any field is a 422.",
    }
}
TAGS = ["Webhooks"]
DELIVERY_ID_PATTERN = r"deliveries/(?P<delivery_id>[A-Za-z0-9_-]{1,64})"


class WebhookSubscriptionViewSet(ApiViewSet):
    @extend_schema(
        operation_id="webhook_subscriptions_create",
        summary="Subscribe a URL to events",
        description="Registers an endpoint for the listed event types. The response carries the "
        "signing `secret` (`whsec_…`) — the only time it is shown. The URL must be `https` and "
        "resolve only to public addresses; it is checked again on every delivery.",
        request=WebhookSubscriptionCreateInput,
        responses={201: WebhookSubscriptionSecretOutput},
        examples=[
            OpenApiExample(
                "Lead and payment events",
                request_only=True,
                value={
                    "url": "https://hooks.example-crm.com/neuronx",
                    "event_types": ["lead.created", "lead.qualified", "payment.verified"],
                    "description": "CRM sync",
                },
            )
        ],
        tags=TAGS,
    )
    @operation(
        rate_class="webhooks",
        scope="webhooks:manage",
        consent=NO_CONSENT,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("webhook_limit_reached",),
    )
    def create(self, request: Request) -> Response:
        data = self.validated(WebhookSubscriptionCreateInput)
        subscription = subscription_create(actor=self.actor, **data)
        return Response(
            WebhookSubscriptionSecretOutput(subscription).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/v1/webhook-subscriptions/{subscription.id}"},
        )

    @extend_schema(
        operation_id="webhook_subscriptions_list",
        summary="List webhook subscriptions",
        responses={200: WebhookSubscriptionOutput(many=True)},
        tags=TAGS,
    )
    @operation(
        rate_class="webhooks",
        scope="webhooks:manage",
        consent=NO_CONSENT,
        usage=None,
        idempotent=False,
        errors=("malformed_request", "validation_error"),
    )
    def list(self, request: Request) -> Response:
        return self.paginated(
            subscription_list(tenant=self.actor.tenant), WebhookSubscriptionOutput
        )

    @extend_schema(
        operation_id="webhook_subscriptions_retrieve",
        summary="Get a webhook subscription",
        parameters=[SUBSCRIPTION_ID],
        responses={200: WebhookSubscriptionOutput},
        tags=TAGS,
    )
    @operation(
        rate_class="webhooks",
        scope="webhooks:manage",
        consent=NO_CONSENT,
        usage=None,
        idempotent=False,
        errors=("not_found",),
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        subscription = subscription_get(tenant=self.actor.tenant, subscription_id=pk)
        return Response(WebhookSubscriptionOutput(subscription).data)

    @extend_schema(
        operation_id="webhook_subscriptions_update",
        summary="Update a webhook subscription",
        description="Change `url`, `event_types`, `description` or `is_active`. `is_active: "
        "false` pauses it and cancels pending deliveries; `true` re-enables it (also after an "
        "automatic disable) with a clean failure record.",
        parameters=[SUBSCRIPTION_ID],
        request=WebhookSubscriptionUpdateInput,
        responses={200: WebhookSubscriptionOutput},
        examples=[
            OpenApiExample(
                "Lead events only",
                request_only=True,
                value={"event_types": ["lead.created", "lead.updated"], "description": "CRM sync"},
            ),
            OpenApiExample("Pause", request_only=True, value={"is_active": False}),
        ],
        tags=TAGS,
    )
    @operation(
        rate_class="webhooks",
        scope="webhooks:manage",
        consent=NO_CONSENT,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("not_found",),
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        subscription_get(tenant=self.actor.tenant, subscription_id=pk)
        data = self.validated(WebhookSubscriptionUpdateInput)
        subscription = subscription_update(actor=self.actor, subscription_id=pk, data=data)
        return Response(WebhookSubscriptionOutput(subscription).data)

    @extend_schema(
        operation_id="webhook_subscriptions_delete",
        summary="Delete a webhook subscription",
        description="Deletes it and its delivery log; nothing more is sent to it.",
        parameters=[SUBSCRIPTION_ID],
        responses={204: None},
        tags=TAGS,
    )
    @operation(
        rate_class="webhooks",
        scope="webhooks:manage",
        consent=NO_CONSENT,
        usage=None,
        idempotent=False,
        errors=("not_found",),
    )
    def destroy(self, request: Request, pk: str) -> Response:
        subscription_delete(actor=self.actor, subscription_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="webhook_subscriptions_rotate_secret",
        summary="Rotate the signing secret",
        description="Issues a new secret, shown once in the response. The previous secret keeps "
        "signing alongside it for `overlap_seconds` (default 24 hours): during the overlap "
        "`webhook-signature` carries both signatures, so receivers can switch without losing "
        "a message. `overlap_seconds: 0` revokes the previous secret at once (a leak).",
        parameters=[SUBSCRIPTION_ID],
        request=WebhookRotateSecretInput,
        responses={200: WebhookSubscriptionSecretOutput},
        examples=[
            OpenApiExample(
                "Keep the old secret for one hour",
                request_only=True,
                value={"overlap_seconds": 3600},
            )
        ],
        tags=TAGS,
    )
    @operation(
        rate_class="webhooks",
        scope="webhooks:manage",
        consent=NO_CONSENT,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("not_found",),
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        subscription_get(tenant=self.actor.tenant, subscription_id=pk)
        data = self.validated(WebhookRotateSecretInput)
        subscription = subscription_rotate_secret(
            actor=self.actor, subscription_id=pk, overlap_seconds=data.get("overlap_seconds")
        )
        return Response(WebhookSubscriptionSecretOutput(subscription).data)

    @extend_schema(
        operation_id="webhook_subscriptions_test",
        summary="Send a test ping",
        description="Sends a `ping` event to this subscription only, once, without retries "
        "(also when the subscription is paused). Answers `202` with the pending delivery; its "
        "outcome appears in the deliveries log. Send `{}` or no body.",
        parameters=[SUBSCRIPTION_ID],
        request=EMPTY_BODY,
        responses={202: DeliveryOutput},
        tags=TAGS,
    )
    @operation(
        rate_class="webhooks",
        scope="webhooks:manage",
        consent=NO_CONSENT,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("not_found",),
    )
    @action(detail=True, methods=["post"], url_path="test")
    def send_test(self, request: Request, pk: str) -> Response:
        subscription_get(tenant=self.actor.tenant, subscription_id=pk)
        self.validated(WebhookTestInput)
        delivery = subscription_test(actor=self.actor, subscription_id=pk)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="webhook_subscriptions_deliveries_list",
        summary="List a subscription's deliveries",
        description="The delivery log, newest first: one entry per event sent (or noted) to this "
        "subscription, each with every attempt (status, latency, the first 1 KiB of the "
        "response, the error). Filter by `status` or `event_type`.",
        parameters=[SUBSCRIPTION_ID, DeliveryListQuery],
        responses={200: DeliveryOutput(many=True)},
        tags=TAGS,
    )
    @read_operation(
        scope="webhooks:manage", errors=("not_found", "malformed_request", "validation_error")
    )
    @action(detail=True, methods=["get"], url_path="deliveries")
    def deliveries(self, request: Request, pk: str) -> Response:
        filters = self.query(DeliveryListQuery)
        deliveries = delivery_list(tenant=self.actor.tenant, subscription_id=pk, **filters)
        return self.paginated(deliveries, DeliveryOutput)

    @extend_schema(
        operation_id="webhook_subscriptions_deliveries_retrieve",
        summary="Get a delivery",
        description="One delivery with its attempts and the payload that was sent.",
        parameters=[SUBSCRIPTION_ID, DELIVERY_ID],
        responses={200: DeliveryDetailOutput},
        tags=TAGS,
    )
    @read_operation(scope="webhooks:manage", errors=("not_found",))
    @action(detail=True, methods=["get"], url_path=DELIVERY_ID_PATTERN)
    def delivery(self, request: Request, pk: str, delivery_id: str) -> Response:
        found = delivery_get(tenant=self.actor.tenant, subscription_id=pk, delivery_id=delivery_id)
        return Response(DeliveryDetailOutput(found).data)

    @extend_schema(
        operation_id="webhook_subscriptions_deliveries_redeliver",
        summary="Redeliver a delivery",
        description="Sends a finished delivery (`succeeded`, `failed`, `canceled` or `skipped`) "
        "again, once, now: the same `webhook-id` and body, freshly signed. Answers `202`; the "
        "attempt appears in the log. Send `{}` or no body.",
        parameters=[SUBSCRIPTION_ID, DELIVERY_ID],
        request=EMPTY_BODY,
        responses={202: DeliveryOutput},
        tags=TAGS,
    )
    @operation(
        rate_class="webhooks",
        scope="webhooks:manage",
        consent=NO_CONSENT,
        usage=None,
        idempotent=True,
        has_body=True,
        errors=("not_found", "webhook_delivery_pending", "webhook_subscription_inactive"),
    )
    @action(detail=True, methods=["post"], url_path=f"{DELIVERY_ID_PATTERN}/redeliver")
    def redeliver(self, request: Request, pk: str, delivery_id: str) -> Response:
        delivery_get(tenant=self.actor.tenant, subscription_id=pk, delivery_id=delivery_id)
        self.validated(WebhookTestInput)
        delivery = delivery_redeliver(actor=self.actor, subscription_id=pk, delivery_id=delivery_id)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
