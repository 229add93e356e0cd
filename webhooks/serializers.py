"""Webhook input and output serializers. Secrets appear only in `…SecretOutput`."""

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from neuronx.serializers import StrictInput, StrictQuery
from webhooks.events import ALL_TYPES, CATALOG, SUBSCRIBABLE
from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, WebhookSubscription

MAX_DESCRIPTION = 500
MAX_OVERLAP_SECONDS = 7 * 86_400

URL_HELP = (
    "The receiver: an absolute `https` URL whose host resolves only to public addresses (no "
    "credentials, no fragment). Checked again on every delivery."
)
EVENT_TYPES_HELP = (
    'Event types to receive (see `GET /v1/event-types`), or `["*"]` for all of them, '
    "including types added later."
)


@extend_schema_field({"type": "string", "format": "uri", "pattern": "^https://", "maxLength": 2048})
class UrlField(serializers.CharField):
    """A URL of at most WEBHOOK_URL_MAX_LENGTH characters; the SSRF rules are the service's."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(help_text=URL_HELP, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if len(value) > settings.WEBHOOK_URL_MAX_LENGTH:
            raise serializers.ValidationError(
                f"At most {settings.WEBHOOK_URL_MAX_LENGTH} characters.", code="max_length"
            )
        return value


@extend_schema_field({"type": "string", "enum": [ALL_TYPES, *SUBSCRIBABLE]})
class EventTypeNameField(serializers.CharField):
    """An event type name; the service says which are unknown (`unknown_event_type`)."""


def _event_types_field(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=EventTypeNameField(max_length=64),
        allow_empty=False,
        max_length=len(CATALOG) + 1,
        help_text=EVENT_TYPES_HELP,
        **kwargs,
    )


class WebhookSubscriptionCreateInput(StrictInput):
    url = UrlField()
    event_types = _event_types_field()
    description = serializers.CharField(
        max_length=MAX_DESCRIPTION, required=False, allow_blank=True
    )


class WebhookSubscriptionUpdateInput(StrictInput):
    url = UrlField(required=False)
    event_types = _event_types_field(required=False)
    description = serializers.CharField(
        max_length=MAX_DESCRIPTION, required=False, allow_blank=True
    )
    is_active = serializers.BooleanField(
        required=False,
        help_text="`false` pauses deliveries (pending ones are canceled); `true` re-enables a "
        "paused or automatically disabled subscription.",
    )


class WebhookRotateSecretInput(StrictInput):
    overlap_seconds = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_OVERLAP_SECONDS,
        help_text="How long the previous secret keeps signing alongside the new one "
        "(default 24 hours; 0 revokes it at once).",
    )


class WebhookTestInput(StrictInput):
    pass


class WebhookSubscriptionOutput(serializers.ModelSerializer):
    event_types = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = WebhookSubscription
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "is_active",
            "disabled_reason",
            "disabled_at",
            "failing_since",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "disabled_reason": {
                "help_text": "Why the subscription was disabled automatically; empty otherwise."
            },
            "failing_since": {
                "help_text": "When the current run of failed attempts began; null when healthy."
            },
            "previous_secret_expires_at": {
                "help_text": "Until when the previous secret still signs (after a rotation)."
            },
        }


class WebhookSubscriptionSecretOutput(WebhookSubscriptionOutput):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret (`whsec_…`). Shown only in this response: store it.",
    )

    class Meta(WebhookSubscriptionOutput.Meta):
        fields = [*WebhookSubscriptionOutput.Meta.fields, "secret"]
        read_only_fields = fields


class DeliveryAttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "trigger",
            "requested_at",
            "status_code",
            "latency_ms",
            "response_excerpt",
            "error",
            "succeeded",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "trigger": {"help_text": "`automatic` (the schedule) or `manual` (redeliver, test)."},
            "status_code": {"help_text": "The receiver's HTTP status; null if none was received."},
            "latency_ms": {"help_text": "Milliseconds until the response headers (or the error)."},
            "response_excerpt": {"help_text": "The first 1 KiB of the response body."},
            "error": {"help_text": "Why the attempt failed; empty on success."},
        }


class DeliveryOutput(serializers.ModelSerializer):
    event_id = serializers.CharField(read_only=True)
    subscription_id = serializers.CharField(read_only=True)
    attempts = DeliveryAttemptOutput(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "subscription_id",
            "event_id",
            "event_type",
            "status",
            "attempt_count",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "note",
            "created_at",
            "updated_at",
            "finished_at",
            "attempts",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "status": {
                "help_text": "`pending` (an attempt is due), `succeeded`, `failed` (retries "
                "exhausted or final), `canceled` (subscription disabled), `skipped` (a log "
                "note, never sent)."
            },
            "next_attempt_at": {"help_text": "When the next attempt is due; null once finished."},
            "note": {"help_text": "Why the delivery was canceled or skipped."},
        }


class DeliveryDetailOutput(DeliveryOutput):
    payload = serializers.SerializerMethodField(
        help_text="The body sent (the event envelope); signatures are computed per attempt."
    )

    class Meta(DeliveryOutput.Meta):
        fields = [*DeliveryOutput.Meta.fields, "payload"]
        read_only_fields = fields

    def get_payload(self, delivery: Delivery) -> dict[str, Any]:
        return delivery.event.envelope()


class DeliveryListQuery(StrictQuery):
    status = serializers.ChoiceField(required=False, choices=DeliveryStatus.choices)
    event_type = serializers.ChoiceField(required=False, choices=sorted(CATALOG))


class EventTypeListQuery(StrictQuery):
    pass


class EventTypeOutput(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()
    subscribable = serializers.BooleanField(
        help_text="Whether subscriptions can ask for it (`ping` is only sent by `test`)."
    )
    schema = serializers.DictField(
        help_text="JSON Schema (draft 2020-12) of the event's `data` member."
    )


# One page object, although `GET /v1/event-types` is a list action.
@extend_schema_serializer(many=False)
class EventTypeListOutput(serializers.Serializer):
    results = EventTypeOutput(many=True)
    next = serializers.CharField(allow_null=True, help_text="Always null: one page.")
    previous = serializers.CharField(allow_null=True, help_text="Always null: one page.")
