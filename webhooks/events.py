"""The catalog of outbound event types: what each means and the schema of its `data`.

Schemas are OpenAPI 3.0 schema objects. Objects the API also returns elsewhere are `$ref`s to the
components of the OpenAPI document (`LeadOutput`, …), so an event's `data` cannot drift from the
API's own shapes; `webhooks.schema` publishes them in the OpenAPI document and resolves them into
self-contained JSON Schemas for `GET /v1/event-types`.
"""

from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]


def ref(component: str) -> Schema:
    return {"$ref": f"#/components/schemas/{component}"}


def obj(description: str = "", **properties: Schema) -> Schema:
    """An object with these (all required) members; a trailing `_` escapes a keyword."""
    properties = {name.rstrip("_"): value for name, value in properties.items()}
    schema: Schema = {
        "type": "object",
        "required": list(properties),
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def string(description: str = "", *, nullable: bool = False, fmt: str = "") -> Schema:
    schema: Schema = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    if nullable:
        schema["nullable"] = True
    if description:
        schema["description"] = description
    return schema


LEAD = ref("LeadOutput")
APPOINTMENT_DATA = obj(appointment=ref("AppointmentOutput"), lead=LEAD)
PAYMENT_DATA = obj(payment=ref("PaymentOutput"), lead=LEAD)


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    data: Schema
    # Subscriptions can ask for it; `ping` is only ever sent by the `test` action.
    subscribable: bool = True


_TYPES = [
    EventType(
        "lead.created",
        "A lead was created by POST /v1/leads (a bulk import sends one lead_import.completed).",
        obj(lead=LEAD),
    ),
    EventType(
        "lead.updated",
        "A lead's contact fields changed.",
        obj(
            lead=LEAD,
            changed_fields={
                "type": "array",
                "items": {"type": "string"},
                "description": "The lead fields whose value changed.",
            },
        ),
    ),
    EventType(
        "lead.qualified",
        "Scoring qualified the lead.",
        obj(lead=LEAD, qualification=ref("QualificationOutput")),
    ),
    EventType(
        "lead.disqualified",
        "Scoring disqualified the lead.",
        obj(lead=LEAD, qualification=ref("QualificationOutput")),
    ),
    EventType(
        "lead.routed",
        "The lead was assigned an owner.",
        obj(
            lead=LEAD,
            assignment=obj(
                "The assignment made, with the routing trace.",
                id=string("Assignment id."),
                owner=string("The rep who now owns the lead."),
                team=string("The rep's team."),
                rule=string("The rule that matched, or `fallback`."),
                strategy=string("`round_robin`, `weighted` or `least_loaded`."),
                reason=string("Human-readable routing trace."),
                routed_at=string(fmt="date-time"),
                previous_owner=string("The owner before a re-route.", nullable=True),
            ),
        ),
    ),
    EventType(
        "lead_import.completed",
        "A bulk import finished (`completed`, `completed_with_errors` or `failed`).",
        obj(import_=ref("LeadImportOutput")),
    ),
    EventType("appointment.created", "An appointment was booked.", APPOINTMENT_DATA),
    EventType(
        "appointment.updated",
        "An appointment was rescheduled, completed or marked no-show.",
        APPOINTMENT_DATA,
    ),
    EventType("appointment.canceled", "An appointment was canceled.", APPOINTMENT_DATA),
    EventType(
        "payment.initiated",
        "A payment was initiated and has a checkout reference.",
        PAYMENT_DATA,
    ),
    EventType("payment.verified", "A payment was verified internally.", PAYMENT_DATA),
    EventType("payment.failed", "A payment failed, was canceled or expired.", PAYMENT_DATA),
    EventType(
        "case.opened",
        "A verified-paid lead was handed off as a case.",
        obj(
            case=obj(
                id=string("Case id."),
                lead_id=string(),
                payment_id=string("The verified payment that opened the case."),
                opened_at=string(fmt="date-time"),
            ),
            lead=LEAD,
        ),
    ),
    EventType(
        "subscription.disabled",
        "A webhook subscription of the tenant was disabled automatically (its endpoint answered "
        "`410 Gone`, or failed every attempt for too long). Sent to the tenant's other "
        "subscriptions that ask for it; the disabled one shows it as a note in its log.",
        obj(
            subscription=obj(
                id=string("Subscription id (`whsub_…`)."),
                url=string(fmt="uri"),
                disabled_reason=string("Why it was disabled."),
                disabled_at=string(fmt="date-time"),
            )
        ),
    ),
    EventType(
        "ping",
        "A test event sent by `POST /v1/webhook-subscriptions/{id}/test`, to that subscription "
        "only, whatever its `event_types`. Answer it like any other event.",
        obj(
            subscription_id=string("The subscription being tested."),
            message=string(),
        ),
        subscribable=False,
    ),
]

CATALOG: dict[str, EventType] = {event_type.name: event_type for event_type in _TYPES}
# Kept for callers that only need the names and descriptions.
EVENT_TYPES: dict[str, str] = {name: t.description for name, t in CATALOG.items()}
SUBSCRIBABLE: tuple[str, ...] = tuple(name for name, t in CATALOG.items() if t.subscribable)
ALL_TYPES = "*"
