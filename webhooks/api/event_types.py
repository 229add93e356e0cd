"""`GET /v1/event-types`: the catalog of webhook event types with the schema of their data."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from neuronx.operations import read_operation
from neuronx.views import ApiViewSet
from webhooks.schema import event_type_catalog
from webhooks.serializers import EventTypeListOutput, EventTypeListQuery


class EventTypeViewSet(ApiViewSet):
    pagination_class = None

    @extend_schema(
        operation_id="event_types_list",
        summary="List webhook event types",
        description="Every event type a subscription can ask for (and `ping`, sent by the "
        "`test` action), with a description and the JSON Schema of the event's `data` member. "
        "The same schemas are in this OpenAPI document (`components.schemas.WebhookEvent`, "
        "`x-webhooks`). The catalog is short and answered in one page: no query parameters.",
        responses={200: EventTypeListOutput},
        tags=["Webhooks"],
    )
    @read_operation(scope="webhooks:manage", errors=("validation_error",))
    def list(self, request: Request) -> Response:
        EventTypeListQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        return Response({"results": event_type_catalog(), "next": None, "previous": None})
