"""Qualification: score a lead with its tenant's model and move it to qualified/disqualified."""

from typing import Any

from django.db import transaction
from rest_framework import serializers

from consent.selectors import consent_require
from gtm_api.models import Qualification, Stage
from gtm_api.serializers import LeadOutput
from gtm_api.services.lifecycle import lead_lock_for, lead_transition
from gtm_api.services.scoring import lead_score, scoring_model_active
from neuronx.context import Actor
from usage.services import usage_record
from webhooks.services import event_publish

QUALIFY_CONSENT = ("data.profiling",)


def qualification_data(qualification: Qualification) -> dict[str, Any]:
    """The public shape of a qualification (the API response and the webhook payload)."""
    return {
        "id": qualification.id,
        "lead_id": qualification.lead_id,
        "score": qualification.score,
        "qualified": qualification.qualified,
        "grade": qualification.grade,
        "factors": qualification.factors,
        "model_version": qualification.model_version,
        "stage": qualification.lead.stage,
        "qualified_at": serializers.DateTimeField().to_representation(qualification.created_at),
    }


@transaction.atomic
def lead_qualify(*, actor: Actor, lead_id: str) -> Qualification:
    """Score the lead with the tenant's active scoring model (or the default) and record it.

    Guarantees, all in one transaction: the lead is locked and must be in `new`, `qualified` or
    `disqualified` (`not_found`, `lead_closed`, `invalid_state_transition` otherwise); it must
    have granted `data.profiling` (`consent_required` otherwise). On success one `Qualification`
    row is written with every factor, `lead.score` is set, the lead moves to `qualified` or
    `disqualified` (a `StageTransition` with cause `qualify` when the stage changes; re-qualifying
    into the same stage records none), one `lead.qualified` usage event is recorded whatever the
    outcome, and one `lead.qualified` or `lead.disqualified` event is published.
    """
    lead = lead_lock_for(actor=actor, lead_id=lead_id, action="qualify")
    consent_require(lead=lead, scopes=QUALIFY_CONSENT)
    result = lead_score(lead=lead, model=scoring_model_active(tenant=actor.tenant))
    qualification = Qualification.objects.create(
        tenant=actor.tenant,
        lead=lead,
        score=result.score,
        qualified=result.qualified,
        grade=result.grade,
        factors=[factor.as_dict() for factor in result.factors],
        model_version=result.model_version,
    )
    lead.score = result.score
    lead.save(update_fields=["score", "updated_at"])
    lead_transition(
        actor=actor,
        lead=lead,
        to_stage=Stage.QUALIFIED if result.qualified else Stage.DISQUALIFIED,
        cause="qualify",
    )
    usage_record(actor=actor, dimension="lead.qualified", quantity=1)
    event_publish(
        actor=actor,
        type="lead.qualified" if result.qualified else "lead.disqualified",
        data={"lead": LeadOutput(lead).data, "qualification": qualification_data(qualification)},
    )
    return qualification
