from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from consent.models import ConsentRecord
from consent.services import consent_append
from gtm_api.selectors.leads import lead_get
from neuronx import errors
from neuronx.context import Actor


@transaction.atomic
def lead_consents_append(
    *, actor: Actor, lead_id: str, records: Iterable[Mapping[str, Any]]
) -> list[ConsentRecord]:
    """Append consent records to the tenant's lead. Raises `lead_closed` once it is handed off."""
    lead = lead_get(tenant=actor.tenant, lead_id=lead_id, for_update=True)
    if lead.is_closed:
        raise errors.LeadClosed("The lead is verified_paid and handed off; it is read-only.")
    return consent_append(actor=actor, lead=lead, records=records)
