"""The lead stage machine: every transition of CONTRACT section 1 lives here, and only here.

Public actions lock the lead (`lead_lock_for`), which refuses closed leads and bad stages, then
move it with `lead_transition`, which records the change in the same transaction. Internal
causes (payment verification, failure, expiry, appointment cancellation) call `lead_transition`
directly; nothing public can reach `verified_paid`.
"""

from gtm_api.models import Lead, Stage, StageTransition
from gtm_api.selectors.leads import lead_get
from neuronx import errors
from neuronx.context import Actor

# Which stages each public action may start from.
ACTION_FROM: dict[str, frozenset[str]] = {
    "qualify": frozenset({Stage.NEW, Stage.QUALIFIED, Stage.DISQUALIFIED}),
    "route": frozenset({Stage.QUALIFIED, Stage.ROUTED}),
    "appointment": frozenset({Stage.ROUTED, Stage.APPOINTMENT_SCHEDULED}),
    "payment": frozenset({Stage.ROUTED, Stage.APPOINTMENT_SCHEDULED, Stage.PAYMENT_PENDING}),
}

ACTION_VERB = {
    "qualify": "qualify",
    "route": "route",
    "appointment": "book an appointment for",
    "payment": "initiate a payment for",
}

_ORDER = list(Stage.values)


def lead_ensure_open(lead: Lead) -> None:
    if lead.is_closed:
        raise errors.LeadClosed(
            f"Lead {lead.id} is verified_paid and handed off as a case; it is read-only."
        )


def lead_lock_for(*, actor: Actor, lead_id: str, action: str) -> Lead:
    """Lock the tenant's lead for `action`: `not_found`, `lead_closed` or
    `invalid_state_transition` (naming the current stage and the stages the action needs)."""
    lead = lead_get(tenant=actor.tenant, lead_id=lead_id, for_update=True)
    lead_ensure_open(lead)
    allowed = ACTION_FROM[action]
    if lead.stage not in allowed:
        needed = sorted(allowed, key=_ORDER.index)
        raise errors.InvalidStateTransition(
            f"Cannot {ACTION_VERB[action]} a lead in stage `{lead.stage}`; it must be in "
            + " or ".join(f"`{s}`" for s in needed)
            + ".",
            current_stage=lead.stage,
            allowed_stages=needed,
        )
    return lead


def lead_transition(*, actor: Actor, lead: Lead, to_stage: str, cause: str) -> bool:
    """Move a locked lead to `to_stage` and record it; returns False when it was already there."""
    if lead.stage == to_stage:
        return False
    StageTransition.objects.create(
        tenant=actor.tenant,
        lead=lead,
        from_stage=lead.stage,
        to_stage=to_stage,
        cause=cause,
        actor=actor.label,
        request_id=actor.request_id,
    )
    lead.stage = to_stage
    lead.save(update_fields=["stage", "updated_at"])
    return True
