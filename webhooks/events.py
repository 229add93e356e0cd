"""The catalog of outbound event types."""

EVENT_TYPES: dict[str, str] = {
    "lead.created": "A lead was created (single or bulk ingestion).",
    "lead.updated": "A lead's contact fields changed.",
    "lead.qualified": "Scoring qualified the lead.",
    "lead.disqualified": "Scoring disqualified the lead.",
    "lead.routed": "The lead was assigned an owner.",
    "lead_import.completed": "A bulk import finished.",
    "appointment.created": "An appointment was booked.",
    "appointment.updated": "An appointment was rescheduled, completed or marked no-show.",
    "appointment.canceled": "An appointment was canceled.",
    "payment.initiated": "A payment was initiated and has a checkout reference.",
    "payment.verified": "A payment was verified internally.",
    "payment.failed": "A payment failed, was canceled or expired.",
    "case.opened": "A verified-paid lead was handed off as a case.",
}
