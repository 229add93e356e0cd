"""Lead ingestion (single) and contact updates."""

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction

from consent.services import consent_append
from gtm_api.models import Lead
from gtm_api.selectors.leads import lead_find_duplicate, lead_get
from gtm_api.serializers import LeadOutput
from neuronx import errors
from neuronx.context import Actor
from neuronx.inserts import insert_unless_conflict
from usage.services import usage_record
from webhooks.services import event_publish

CONTACT_FIELDS = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "company",
    "job_title",
    "country",
    "source",
    "attributes",
)


def _lead_exists(lead: Lead) -> errors.LeadExists:
    return errors.LeadExists(
        f"A lead with this email or external_id already exists: {lead.id}.", existing_id=lead.id
    )


def _raise_if_duplicate(
    *, actor: Actor, email: str | None, external_id: str | None, exclude_id: str | None = None
) -> None:
    existing = lead_find_duplicate(
        tenant=actor.tenant, email=email, external_id=external_id, exclude_id=exclude_id
    )
    if existing is not None:
        raise _lead_exists(existing)


# Within a caller's transaction (the API's), no savepoint of its own: a failure rolls the
# whole action back anyway, and a savepoint costs two round trips.
@transaction.atomic(savepoint=False)
def lead_create(*, actor: Actor, data: Mapping[str, Any]) -> Lead:
    """Create a lead in stage `new` with its consents.

    Guarantees: unique email and external_id per tenant (`lead_exists`, enforced by database
    constraints under races); writes one `lead.ingested` usage event and a `lead.created` event
    in the same transaction. Consent: none required.
    """
    fields = {name: data[name] for name in CONTACT_FIELDS if name in data}
    fields.setdefault("attributes", {})
    lead = Lead(tenant=actor.tenant, **fields)
    # The unique constraints decide, in one statement; a lead that exists (or that a
    # concurrent request has just created) makes the insert write nothing.
    if not insert_unless_conflict(lead):
        _raise_if_duplicate(
            actor=actor, email=fields.get("email"), external_id=fields.get("external_id")
        )
        raise IntegrityError(f"lead {lead.id} was not inserted and no lead conflicts with it")
    if data.get("consents"):
        consent_append(actor=actor, lead=lead, records=data["consents"])
    usage_record(actor=actor, dimension="lead.ingested", quantity=1)
    event_publish(actor=actor, type="lead.created", data={"lead": LeadOutput(lead).data})
    return lead


@transaction.atomic
def lead_update(*, actor: Actor, lead_id: str, data: Mapping[str, Any]) -> Lead:
    """Change contact fields (never `stage`). Emits `lead.updated` when anything changed.

    Raises `lead_closed` for a verified-paid lead, `lead_exists` if the new email or external_id
    belongs to another lead, `validation_error` if neither email nor phone would remain.
    """
    lead = lead_get(tenant=actor.tenant, lead_id=lead_id, for_update=True)
    if lead.is_closed:
        raise errors.LeadClosed("The lead is verified_paid and handed off; it is read-only.")
    changed = [
        name for name in CONTACT_FIELDS if name in data and getattr(lead, name) != data[name]
    ]
    if not changed:
        return lead
    for name in changed:
        setattr(lead, name, data[name])
    if lead.email is None and lead.phone is None:
        raise errors.ValidationFailed(
            [
                {
                    "field": "email",
                    "code": "email_or_phone_required",
                    "message": "A lead must keep at least one of email or phone.",
                }
            ]
        )
    _raise_if_duplicate(
        actor=actor,
        email=lead.email if "email" in changed else None,
        external_id=lead.external_id if "external_id" in changed else None,
        exclude_id=lead.id,
    )
    try:
        with transaction.atomic():
            lead.save(update_fields=[*changed, "updated_at"])
    except IntegrityError:
        _raise_if_duplicate(
            actor=actor, email=lead.email, external_id=lead.external_id, exclude_id=lead.id
        )
        raise
    event_publish(
        actor=actor,
        type="lead.updated",
        data={"lead": LeadOutput(lead).data, "changed_fields": changed},
    )
    return lead
