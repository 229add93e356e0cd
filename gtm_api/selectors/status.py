from dataclasses import dataclass
from typing import Any

from consent.selectors import ScopeState, consent_history, consent_state
from gtm_api.models import (
    Appointment,
    Assignment,
    Lead,
    Payment,
    Qualification,
    Stage,
    StageTransition,
)
from neuronx import errors
from neuronx.models import Tenant


@dataclass(frozen=True)
class LeadStatus:
    lead: Lead
    qualification: Qualification | None
    assignment: Assignment | None
    appointments: list[Appointment]
    payments: list[Payment]
    consent: dict[str, ScopeState]
    history: list[StageTransition]

    @property
    def boundary(self) -> dict[str, Any]:
        case = getattr(self.lead, "case", None)
        return {
            "verified_paid": self.lead.stage == Stage.VERIFIED_PAID,
            "case_opened_at": case.opened_at if case else None,
            "case_id": case.id if case else None,
        }


def lead_status(*, tenant: Tenant, lead_id: str) -> LeadStatus:
    """Everything about a lead's lifecycle in a fixed number of queries, whatever its history."""
    try:
        lead = Lead.objects.select_related("case").get(tenant_id=tenant.pk, pk=lead_id)
    except Lead.DoesNotExist:
        raise errors.NotFound(f"No lead {lead_id!r}.") from None
    # By `lead_id`, not `lead`: the ORM builds a query on a plain value with less work.
    history = consent_history(lead=lead)
    return LeadStatus(
        lead=lead,
        qualification=Qualification.objects.filter(lead_id=lead.pk)
        .order_by("-created_at", "-id")
        .first(),
        assignment=Assignment.objects.filter(lead_id=lead.pk)
        .order_by("-created_at", "-id")
        .first(),
        appointments=list(Appointment.objects.filter(lead_id=lead.pk).order_by("starts_at", "id")),
        payments=list(Payment.objects.filter(lead_id=lead.pk).order_by("id")),
        consent=consent_state(lead=lead, history=history),
        history=list(StageTransition.objects.filter(lead_id=lead.pk).order_by("at", "id")),
    )
